"""`ecommerce-assets plan`: what the checkout's models will do to a warehouse, before anything runs
(SQLMesh's plan, dbt's `state:modified`).

A warehouse's publish log keeps each table's fingerprint: a hash of its model's code and of its
upstream fingerprints (`project/node.py`, `fingerprints`). A model whose fingerprint differs from the published
one was changed directly when its code, hashed with the *published* upstream fingerprints, still
differs; otherwise only something upstream changed and it is rebuilt downstream of a change. A
direct change is breaking when a published column goes or changes type (a rename is both), from
the checkout's bound columns against the published table's.

It reads either a warehouse file (its publish log and tables) or a readers' copy, which carries the
same (`serving.PUBLISHED`, `serving.COLUMNS`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb

from ecommerce_assets.markdown import markdown_table
from ecommerce_assets.project.node import Node, fingerprint, fingerprints
from ecommerce_assets.run.duckdb.catalog import Catalog
from ecommerce_assets.run.duckdb.logs import PUBLISH_LOG, latest_publish_query
from ecommerce_assets.run.duckdb.serve import COLUMNS, PUBLISHED

ORDER = ("modified", "added", "downstream", "kept", "removed")


@dataclass(frozen=True)
class Published:
    version: str | None
    inputs: str | None
    columns: dict[str, str]


@dataclass(frozen=True)
class Planned:
    table: str
    status: str  # one of ORDER
    breaking: bool = False
    changes: tuple[str, ...] = ()  # the schema changes of a modified model


def published_state(con: duckdb.DuckDBPyConnection, database: str) -> dict[str, Published]:
    """Table -> what `database` (attached to `con`) last published: a warehouse or a readers' copy."""
    tables = {
        r[0]
        for r in con.execute(
            f"select schema_name || '.' || table_name from duckdb_tables() where database_name = '{database}'"
        ).fetchall()
    }
    if PUBLISHED in tables:
        log = con.execute(f"select table_name, code_version, inputs from {database}.{PUBLISHED}").fetchall()
        columns = con.execute(
            f"select table_name, column_name, data_type from {database}.{COLUMNS} order by column_index"
        ).fetchall()
    elif PUBLISH_LOG in tables:
        log = con.execute(latest_publish_query(database)).fetchall()
        columns = con.execute(
            "select schema_name || '.' || table_name, column_name, data_type from duckdb_columns()"
            f" where database_name = '{database}' order by column_index"
        ).fetchall()
    else:
        raise ValueError(f"{database}: neither a warehouse (no {PUBLISH_LOG}) nor a readers' copy (no {PUBLISHED})")
    by_table: dict[str, dict[str, str]] = {}
    for table, column, type_ in columns:
        by_table.setdefault(table, {})[column] = type_
    return {table: Published(version, inputs, by_table.get(table, {})) for table, version, inputs in log}


def published_analysis_date(state: Mapping[str, Published]) -> dt.date | None:
    """The analysis date of the last publish (each date-relative model records it in its inputs)."""
    for published in state.values():
        found = re.search(r"analysis_date=(\d{4}-\d{2}-\d{2})", published.inputs or "")
        if found:
            return dt.date.fromisoformat(found.group(1))
    return None


def plan(nodes: Sequence[Node], catalog: Catalog, state: Mapping[str, Published]) -> list[Planned]:
    """Every node of the checkout (in dependency order), then the published tables it no longer has."""
    current = fingerprints(nodes)
    published = {n.name: state[n.table].version for n in nodes if n.table in state}
    planned = []
    for node in nodes:
        was = state.get(node.table)
        if was is None:
            planned.append(Planned(node.table, "added"))
            continue
        if current[node.name] == was.version:
            planned.append(Planned(node.table, "kept"))
            continue
        if fingerprint(node, published) == was.version:
            planned.append(Planned(node.table, "downstream"))
            continue
        now = dict(catalog.columns[node.name])
        changes = (
            *(f"column removed: {c}" for c in was.columns if c not in now),
            *(f"column retyped: {c} {t} -> {now[c]}" for c, t in was.columns.items() if c in now and now[c] != t),
        )
        breaking = bool(changes) and bool(was.columns)
        changes += tuple(f"column added: {c}" for c in now if was.columns and c not in was.columns)
        planned.append(Planned(node.table, "modified", breaking, changes))
    tables = {n.table for n in nodes}
    planned += [Planned(t, "removed", True) for t in sorted(state) if t not in tables and not t.startswith("raw._")]
    return planned


def selected(planned: Sequence[Planned]) -> set[str]:
    """`state:modified+`: the tables a slim build builds (changed or new, and all downstream of them)."""
    return {p.table for p in planned if p.status in ("modified", "added", "downstream")}


def _label(p: Planned) -> str:
    if p.status == "modified":
        return "modified, breaking" if p.breaking else "modified, non-breaking"
    return p.status


def summary(planned: Sequence[Planned]) -> str:
    counts = {s: sum(p.status == s for p in planned) for s in ORDER}
    breaking = sum(p.breaking for p in planned if p.status == "modified")
    return (
        f"{counts['modified']} modified ({breaking} breaking), {counts['added']} added, "
        f"{counts['downstream']} rebuilt downstream, {counts['kept']} kept, {counts['removed']} removed"
    )


def as_text(planned: Sequence[Planned]) -> str:
    lines = []
    for p in sorted(planned, key=lambda p: ORDER.index(p.status)):
        lines.append(f"{_label(p):24} {p.table}")
        lines += [f"{'':24}   {c}" for c in p.changes]
    return "\n".join([*lines, summary(planned)]) + "\n"


def as_markdown(planned: Sequence[Planned]) -> str:
    rows = [
        [_label(p), f"`{p.table}`", "<br>".join(p.changes) or "-"]
        for p in sorted(planned, key=lambda p: ORDER.index(p.status))
        if p.status != "kept"
    ]
    return f"### Plan: {summary(planned)}\n\n" + markdown_table(["change", "table", "schema"], rows) + "\n"
