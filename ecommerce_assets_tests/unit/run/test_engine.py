"""The seam of run/adapter.py holds: a third engine (Python's own SQLite, real SQL on a real file)
plugs in as one small adapter class, and run/engine.py applies the same rules to it as to DuckDB and
Spark: a failed build skips what reads it, a failed blocking check holds its table and everything
built from it, and what is not published stays as the previous run left it."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from ecommerce_assets.errors import RunFailed
from ecommerce_assets.run.adapter import Built, Checked, CheckOutcome, Project, Selection, TableStats
from ecommerce_assets.run.engine import execute

LOG = SimpleNamespace(lines=[])
LOG.info = LOG.warning = LOG.error = LOG.lines.append


@dataclass(frozen=True)
class Check:
    name: str
    sql: str  # the failing rows, reading {table}
    blocking: bool = True


@dataclass(frozen=True)
class Step:
    """A node as the engine sees one: a name, what it reads ({dep} in its SQL), its checks."""

    name: str
    sql: str
    deps: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()
    materialized: str = "table"
    layer: str = "main"

    @property
    def table(self) -> str:
        return f"main.{self.name}"

    @property
    def check_deps(self) -> dict[str, tuple[str, ...]]:
        return {c.name: () for c in self.checks}


@dataclass
class SQLiteAdapter:
    """Builds `<name>__new`, publishes by renames in one transaction, drops what it did not publish."""

    path: Path
    run_id: str = "run"
    concurrency: int = 1
    errors: tuple = (sqlite3.Error,)
    phases: dict = field(default_factory=dict)
    built: set = field(default_factory=set)

    def __post_init__(self):
        self.con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)

    def _tables(self) -> set[str]:
        return {n for (n,) in self.con.execute("select name from sqlite_master where type = 'table'")}

    def _reads(self, name: str) -> str:
        return f"{name}__new" if name in self.built else name

    def prepare(self, project, log):
        self.discard()
        return self._tables()

    def unchanged_since(self, node, rebuilt, exists):
        return None

    def keep(self, node, since):
        raise AssertionError("never kept: unchanged_since is None")

    def build(self, node, exists):
        started = time.perf_counter()
        sql = node.sql.format(**{d: self._reads(d) for d in node.deps})
        self.con.execute(f"create table {node.name}__new as {sql}")
        self.built.add(node.name)
        rows = self.con.execute(f"select count(*) from {node.name}__new").fetchone()[0]
        return Built(node, {"sql": sql}, TableStats(rows, [], [], []), time.perf_counter() - started)

    def check(self, node, checks, kept):
        results = []
        for check in checks:
            sql = check.sql.format(table=self._reads(node.name))
            failing = self.con.execute(f"select count(*) from ({sql})").fetchone()[0]
            results.append(Checked(node, check, CheckOutcome(failing, [], [], sql)))
        return results

    def publish(self, built, checked):
        self.con.execute("begin")
        for event in built:
            name = event.node.name
            self.con.execute(f"drop table if exists {name}")
            self.con.execute(f"alter table {name}__new rename to {name}")
            self.built.discard(name)
        self.con.execute("commit")

    def after_publish(self):
        return {}

    def discard(self):
        for table in [t for t in self._tables() if t.endswith("__new")]:
            self.con.execute(f"drop table {table}")
        self.built.clear()

    def interrupt(self):
        self.con.interrupt()

    def close(self):
        self.con.close()


def _run(path: Path, nodes: list[Step]) -> tuple[list, RunFailed | None]:
    adapter = SQLiteAdapter(path)
    events, error = [], None
    try:
        for event in execute(adapter, Project(nodes), Selection.everything(nodes), LOG, threading.Event()):
            events.append(event)
    except RunFailed as e:
        error = e
    finally:
        adapter.close()
    return events, error


def _rows(path: Path) -> dict[str, list]:
    con = sqlite3.connect(path)
    tables = [n for (n,) in con.execute("select name from sqlite_master where type = 'table' order by name")]
    rows = {t: con.execute(f"select * from {t} order by 1").fetchall() for t in tables}
    con.close()
    return rows


POSITIVE = Check("positive", "select * from {table} where x <= 0")
GRAPH = [
    Step("a", "select 1 as x union all select 2"),
    Step("b", "select x * 10 as x from {a}", deps=("a",), checks=(POSITIVE,)),
    Step("c", "select sum(x) as x from {b}", deps=("b",)),
    Step("d", "select x + 100 as x from {a}", deps=("a",)),
]


@pytest.fixture
def published(tmp_path) -> Path:
    path = tmp_path / "w.sqlite"
    events, error = _run(path, GRAPH)
    assert error is None
    assert _rows(path) == {"a": [(1,), (2,)], "b": [(10,), (20,)], "c": [(30,)], "d": [(101,), (102,)]}
    assert {e.node.name for e in events if isinstance(e, Built)} == {"a", "b", "c", "d"}
    return path


def test_a_failed_build_skips_what_reads_it_and_publishes_the_rest(published):
    nodes = [
        Step("a", "select 3 as x"),
        Step("b", "select x * 10 as x from {a} where no_such_column", deps=("a",)),
        *GRAPH[2:],
    ]
    events, error = _run(published, nodes)
    assert error is not None and "b: no such column: no_such_column" in str(error)
    assert {e.node.name for e in events if isinstance(e, Built)} == {"a", "d"}
    # c kept what it read from the b that was published: nothing of this run reached it.
    assert _rows(published) == {"a": [(3,)], "b": [(10,), (20,)], "c": [(30,)], "d": [(103,)]}


def test_a_failed_blocking_check_holds_its_table_and_everything_built_from_it(published):
    nodes = [
        Step("a", "select 4 as x"),
        Step("b", "select x - 5 as x from {a}", deps=("a",), checks=(POSITIVE,)),
        *GRAPH[2:],
    ]
    events, error = _run(published, nodes)
    assert error is None  # a check that fails is a result, not a failed run
    [checked] = [e for e in events if isinstance(e, Checked)]
    assert (checked.node.name, checked.outcome.failing) == ("b", 1)
    # b failed its check: b is held, c (which reads it) is not built, a and d are published.
    assert {e.node.name for e in events if isinstance(e, Built)} == {"a", "d"}
    assert _rows(published) == {"a": [(4,)], "b": [(10,), (20,)], "c": [(30,)], "d": [(104,)]}
    assert "c: skipped, upstream ['b'] failed or failed a blocking check" in LOG.lines
    assert any(line.startswith("built but not published") and line.endswith("['b']") for line in LOG.lines)
