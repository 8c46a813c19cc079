"""The seam between a run and the engine that holds its tables: what the run asks of an engine
(`Adapter`, as dbt and SQLMesh call theirs), and the values that cross it.

The run's order, skips, holds, publish rule, events and phases are run/engine.py's, the same on
every engine; how a table is loaded, built, checked and published is the adapter's: DuckDB's
(run/duckdb/: tables built under temporary names, one publish transaction) or Spark's (run/spark/:
a run's own table versions, views swapped to them). A third engine is one more class with these
methods; nothing in run/engine.py changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ecommerce_assets.project.checks import CheckDecl
from ecommerce_assets.project.node import Node
from ecommerce_assets.run.pump import Log

SAMPLE_ROWS = 10

# Rows shown in the catalog: a sample of a model, the whole answer of an analysis (up to 50).
PREVIEW_ROWS = {"analyses": 50}
DEFAULT_PREVIEW_ROWS = 5

BUILT_IN_FULL = "not run: this run built the table from scratch with the SQL the check would rebuild it with"


@dataclass(frozen=True)
class Project:
    """What a run can build: raw tables and resolved models in dependency order, the macros to
    create first, and the hand-written work after some models (by model name; the adapter's to
    call, see run/duckdb/adapter.py's AfterBuild). A hook may carry a `warm_up` attribute: a
    function started on a spare thread when a run that selects the model begins (to import a heavy
    library while the engine works)."""

    nodes: Sequence[Node]
    macros: Sequence[str] = ()
    after_build: Mapping[str, Callable] = field(default_factory=dict)


@dataclass(frozen=True)
class Selection:
    """The node names to build and the (node, check) pairs to run."""

    assets: frozenset[str]
    checks: frozenset[tuple[str, str]] = field(default_factory=frozenset)

    @classmethod
    def everything(cls, nodes: Sequence[Node]) -> Selection:
        return cls(
            frozenset(n.name for n in nodes),
            frozenset((n.name, c.name) for n in nodes for c in n.checks),
        )


@dataclass(frozen=True)
class TableStats:
    """What the catalog shows of a built table: its size, its columns and a few rows."""

    rows: int
    columns: list[tuple[str, str]]  # name, the engine's type
    preview_columns: list[str]
    preview: list[tuple]


@dataclass(frozen=True)
class CheckOutcome:
    failing: int
    columns: list[str]
    sample: list[tuple]
    sql: str
    # Why the outcome is known without running the query (shown with the result), or None.
    note: str | None = None

    @property
    def passed(self) -> bool:
        return self.failing == 0


@dataclass(frozen=True)
class Built:
    node: Node
    metadata: dict[str, object]  # plain values (statement, load mode, rows merged...) and the hooks' own
    stats: TableStats
    duration_s: float


@dataclass(frozen=True)
class Checked:
    node: Node
    check: CheckDecl
    outcome: CheckOutcome | None  # None when the check's query failed
    error: str | None = None
    # Not run: the run that gave this outcome, on the same table and inputs (a kept table).
    carried_from: str | None = None


class Adapter(Protocol):
    """One run's hold on an engine's tables. run/engine.py calls `prepare`, `unchanged_since` and
    `publish` on the run's thread, `keep`, `build` and `check` on up to `concurrency` worker threads
    at a time. A failed build raises RawLoadError or ModelError (naming the file) or one of
    `errors`; a failed check is a Checked with its `error`."""

    run_id: str
    # Statements at a time: DuckDB runs two side by side; Spark parallelises inside each.
    concurrency: int
    # What a failed statement raises beyond the project's own errors.
    errors: tuple[type[BaseException], ...]
    # Where the run's time went (engine.run_phases), for the run's summary; set by the engine.
    phases: dict[str, float]

    def prepare(self, project: Project, log: Log) -> set[str]:
        """Drops what a dead run left unpublished, creates the schemas and the logs; returns the
        names of the nodes whose tables exist."""

    def unchanged_since(self, node: Node, rebuilt: set[str], exists: bool) -> str | None:
        """The run whose published table `node` still is (same code, inputs and dates, nothing it
        reads rebuilt), or None to build it."""

    def keep(self, node: Node, since: str) -> Built:
        """What the catalog shows of a published table the run leaves as it is."""

    def build(self, node: Node, exists: bool) -> Built:
        """The node's table (or view) and its files, staged: readers see none of it until `publish`."""

    def check(self, node: Node, checks: list[CheckDecl], kept: bool) -> list[Checked]:
        """The outcomes of `checks` on what the run will publish of `node` (`kept`: the published
        table, whose last outcomes may stand)."""

    def publish(self, built: list[Built], checked: list[Checked]) -> None:
        """Makes `built` (in order) what readers see, with their files, and records the publish and
        `checked`'s outcomes in the logs."""

    def after_publish(self) -> Mapping[str, float]:
        """Work after the publish that readers do not wait for; returns its phases' seconds."""

    def discard(self) -> None:
        """Drops everything staged and not published (a stopped run, or at the end of any run)."""

    def interrupt(self) -> None:
        """Ends the running statements (from any thread)."""

    def close(self) -> None: ...
