"""The readers' copy is written incrementally, on real DuckDB files: only what was published since the
last copy is copied again, and the copy replaces the old file by a rename, so readers keep their snapshot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from ecommerce_assets import publish
from ecommerce_assets.serving import write_serving_copy

SKIPS = ("raw", "staging")


class Warehouse:
    """A small warehouse published the way runs publish: each relation's rows, then a publish-log row."""

    def __init__(self, path: Path):
        self.con = duckdb.connect(str(path))
        self.runs = 0
        for schema in ("raw", "staging", "marts", "analyses", "_changes"):
            self.con.execute(f"create schema {schema}")
        publish.create_publish_log(self.con)

    def run(self, tables: dict[str, str] | None = None, views: dict[str, str] | None = None) -> str:
        """Publishes `tables` and `views` (name -> select) as one run; returns its run id."""
        self.runs += 1
        run_id = f"run-{self.runs}"
        tables, views = tables or {}, views or {}
        for name, sql in tables.items():
            self.con.execute(f"create or replace table {name} as {sql}")
        for name, sql in views.items():
            self.con.execute(f"create or replace view {name} as {sql}")
        for name in [*tables, *views]:
            self.con.execute(
                f"insert into {publish.PUBLISH_LOG} (run_id, table_name, published_at)"
                " values (?, ?, timestamp '2026-01-01' + to_hours(?::bigint))",
                [run_id, name, self.runs],
            )
        return run_id


def copy_contents(path: Path) -> dict[str, list[tuple]]:
    """Every table of a readers' copy but its bookkeeping, with its rows in order."""
    with duckdb.connect(str(path), read_only=True) as con:
        tables = con.execute(
            "select schema_name, table_name from duckdb_tables() where schema_name <> '_serving' order by all"
        ).fetchall()
        return {f"{s}.{t}": con.execute(f"select * from {s}.{t} order by all").fetchall() for s, t in tables}


def recorded_versions(path: Path) -> dict[str, str | None]:
    with duckdb.connect(str(path), read_only=True) as con:
        return dict(con.execute("select relation, run_id from _serving.versions").fetchall())


@pytest.fixture
def warehouse(tmp_path) -> Warehouse:
    wh = Warehouse(tmp_path / "wh.duckdb")
    wh.run(
        tables={
            "raw.orders": "select range as id, range % 3 as customer from range(6)",
            "marts.sales": "select customer, count(*) as orders from raw.orders group by all",
            "marts.products": "select range as product from range(2)",
            "analyses.summary": "select count(*) as customers from marts.sales",
        },
        views={"staging.stg_orders": "select * from raw.orders", "analyses.top": "select * from marts.sales limit 2"},
    )
    # Neither published nor for readers: a run's unpublished build and a bookkeeping schema.
    wh.con.execute(f"create table marts.sales{publish.BUILD_SUFFIX} as select 1 as x")
    wh.con.execute("create table _changes.log as select 1 as x")
    yield wh
    wh.con.close()


def test_the_first_copy_holds_every_published_table_and_view(warehouse, tmp_path):
    path = tmp_path / "wh.serving.duckdb"
    done = write_serving_copy(warehouse.con, path, SKIPS)
    everything = ["analyses.summary", "analyses.top", "marts.products", "marts.sales"]
    assert (done.fresh, done.copied, done.kept, done.dropped) == (True, everything, [], [])
    assert copy_contents(path) == {
        "analyses.summary": [(3,)],
        "analyses.top": [(0, 2), (1, 2)],  # the view, as a table
        "marts.products": [(0,), (1,)],
        "marts.sales": [(0, 2), (1, 2), (2, 2)],
    }
    # Views have no run of their own (their rows follow what they read): no version, always copied.
    assert recorded_versions(path) == {
        "analyses.summary": "run-1",
        "analyses.top": None,
        "marts.products": "run-1",
        "marts.sales": "run-1",
    }
    assert not publish.staged_path(path).exists()
    assert sorted(r for (r,) in warehouse.con.execute("select database_name from duckdb_databases()").fetchall()) == [
        "system",
        "temp",
        "wh",
    ]


def test_the_next_copy_copies_only_what_was_published_since_and_drops_what_went(warehouse, tmp_path):
    path = tmp_path / "wh.serving.duckdb"
    write_serving_copy(warehouse.con, path, SKIPS)
    before = copy_contents(path)

    warehouse.run(tables={"marts.sales": "select range as customer, 10 as orders from range(4)"})
    done = write_serving_copy(warehouse.con, path, SKIPS)
    assert (done.fresh, done.copied, done.kept, done.dropped) == (
        False,
        ["analyses.top", "marts.sales"],  # the view reads marts.sales: copied every time
        ["analyses.summary", "marts.products"],
        [],
    )
    after = copy_contents(path)
    assert after["marts.sales"] == [(0, 10), (1, 10), (2, 10), (3, 10)]
    assert after["analyses.top"] == [(0, 10), (1, 10)]
    assert after["analyses.summary"] == before["analyses.summary"] == [(3,)]  # not republished: kept as it was
    assert recorded_versions(path)["marts.sales"] == "run-2"

    # A relation dropped from the warehouse goes from the copy, with its schema once that is empty;
    # a new one comes, and a table no run published (not in the log) is copied every time.
    warehouse.con.execute("drop table marts.products")
    warehouse.con.execute("drop table analyses.summary")
    warehouse.con.execute("drop view analyses.top")
    warehouse.con.execute("create schema ml")
    warehouse.run(tables={"ml.features": "select 1 as feature"})
    warehouse.con.execute("create table marts.by_hand as select 7 as x")
    done = write_serving_copy(warehouse.con, path, SKIPS)
    assert (done.copied, done.kept, done.dropped) == (
        ["marts.by_hand", "ml.features"],
        ["marts.sales"],
        ["analyses.summary", "analyses.top", "marts.products"],
    )
    assert set(copy_contents(path)) == {"marts.by_hand", "marts.sales", "ml.features"}
    with duckdb.connect(str(path), read_only=True) as con:
        schemas = {s for (s,) in con.execute("select schema_name from duckdb_schemas() where not internal").fetchall()}
    assert schemas == {"_serving", "marts", "ml"}
    assert write_serving_copy(warehouse.con, path, SKIPS).copied == ["marts.by_hand"]


READER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
query = "select count(*), sum(orders) from marts.sales"
print(*con.execute(query).fetchone(), flush=True)
sys.stdin.readline()  # the test writes the next copy meanwhile
print(*con.execute(query).fetchone(), flush=True)
"""


def test_a_reader_of_the_old_copy_keeps_its_snapshot(warehouse, tmp_path):
    path = tmp_path / "wh.serving.duckdb"
    write_serving_copy(warehouse.con, path, SKIPS)
    # Another process: DuckDB shares one open database per file and process.
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout.readline().split() == ["3", "6"]
        warehouse.run(tables={"marts.sales": "select range as customer, 10 as orders from range(4)"})
        assert write_serving_copy(warehouse.con, path, SKIPS).copied == ["analyses.top", "marts.sales"]
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline().split() == ["3", "6"]  # the old file, whole and unchanged
    finally:
        reader.stdin.close()
        reader.wait(30)
    newcomer = subprocess.run(
        [sys.executable, "-c", READER, str(path)], input="\n", capture_output=True, text=True, check=True
    )
    assert newcomer.stdout.split() == ["4", "40", "4", "40"]


def test_a_copy_it_cannot_use_is_replaced_by_a_full_one(warehouse, tmp_path):
    path = tmp_path / "wh.serving.duckdb"
    full = copy_contents(write_and_path(warehouse, tmp_path / "reference.duckdb"))
    staged = publish.staged_path(path)
    # Garbage, and what a write that died left beside it.
    path.write_bytes(b"not a database" * 1000)
    staged.write_bytes(b"half a copy")
    Path(f"{staged}.wal").write_bytes(b"half a wal")
    done = write_serving_copy(warehouse.con, path, SKIPS)
    assert done.fresh and done.kept == [] and len(done.copied) == 4
    assert copy_contents(path) == full
    assert not staged.exists() and not Path(f"{staged}.wal").exists()
    # A DuckDB file without versions (as the copies of earlier releases) is not reused.
    path.unlink()
    with duckdb.connect(str(path)) as old:
        old.execute("create schema marts")
        old.execute("create table marts.sales as select 1 as x")
    done = write_serving_copy(warehouse.con, path, SKIPS)
    assert done.fresh and done.kept == []
    assert copy_contents(path) == full
    assert not write_serving_copy(warehouse.con, path, SKIPS).fresh


def write_and_path(warehouse: Warehouse, path: Path) -> Path:
    write_serving_copy(warehouse.con, path, SKIPS)
    return path


def test_a_write_that_fails_leaves_the_old_copy_as_it_was(warehouse, tmp_path):
    path = tmp_path / "wh.serving.duckdb"
    write_serving_copy(warehouse.con, path, SKIPS)
    old = path.read_bytes()
    warehouse.run(tables={"marts.sales": "select 1 as customer, 1 as orders"})
    warehouse.con.execute("create view analyses.broken as select error('the view fails when read') as x")
    with pytest.raises(duckdb.Error, match="the view fails when read"):
        write_serving_copy(warehouse.con, path, SKIPS)
    assert path.read_bytes() == old
    assert not publish.staged_path(path).exists()
    warehouse.con.execute("drop view analyses.broken")
    assert write_serving_copy(warehouse.con, path, SKIPS).copied == ["analyses.top", "marts.sales"]  # attachable again


def test_replacing_a_table_again_and_again_reuses_the_freed_space(tmp_path):
    wh = Warehouse(tmp_path / "wh.duckdb")
    path = tmp_path / "wh.serving.duckdb"
    sizes = []
    for round_ in range(10):
        wh.run(tables={"marts.big": f"select range as id, md5((range + {round_})::varchar) as s from range(200000)"})
        assert write_serving_copy(wh.con, path, SKIPS).copied == ["marts.big"]
        sizes.append(path.stat().st_size)
    wh.con.close()
    assert max(sizes) < 3 * sizes[0], sizes
