"""What every node of the graph is, a raw table or a model, to the run and to the Dagster glue.

The two kinds answer the same questions (a raw table reads nothing, is a table, is reloaded rather
than maintained), so no caller probes which one it holds to learn what it reads or how it is
checked; it asks the kind only where the two really differ (loading a file vs running SQL).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from ecommerce_assets.project.checks import CheckDecl


@runtime_checkable
class Node(Protocol):
    @property
    def name(self) -> str:
        """The asset's and the table's name."""

    @property
    def layer(self) -> str:
        """The schema and group: `raw` or the model's folder."""

    @property
    def table(self) -> str:
        """`layer.name`."""

    @property
    def path(self) -> Path:
        """The file that declares it."""

    @property
    def deps(self) -> tuple[str, ...]:
        """The nodes it reads."""

    @property
    def materialized(self) -> str:
        """view, table or incremental."""

    @property
    def maintained(self) -> bool:
        """Rebuilt only for the keys a run's raw changes reach (delete+insert)."""

    @property
    def checks(self) -> tuple[CheckDecl, ...]:
        """Its declared checks."""

    @property
    def check_sql(self) -> Mapping[str, str]:
        """Check name -> the query returning its failing rows."""

    @property
    def check_count_sql(self) -> Mapping[str, str]:
        """Check name -> the query counting its failing rows."""

    @property
    def check_deps(self) -> Mapping[str, tuple[str, ...]]:
        """Check name -> the other tables it reads."""

    @property
    def code_version(self) -> str:
        """Changes when what it builds changes."""


def fingerprints(nodes: Sequence[Node]) -> dict[str, str]:
    """Per node (in dependency order): a hash of its code and of its upstream nodes' fingerprints.
    A delete+insert model is maintained only while its fingerprint is the one it was published
    with: any change to its code or upstream of it rebuilds it from scratch."""
    versions: dict[str, str] = {}
    for node in nodes:
        versions[node.name] = fingerprint(node, versions)
    return versions


def fingerprint(node: Node, upstream: Mapping[str, str]) -> str:
    """`node`'s fingerprint given its upstream nodes' (`upstream`: node name -> fingerprint)."""
    deps = "".join(upstream.get(d, "") for d in sorted(node.deps))
    return hashlib.sha256(f"{node.code_version}{deps}".encode()).hexdigest()[:16]
