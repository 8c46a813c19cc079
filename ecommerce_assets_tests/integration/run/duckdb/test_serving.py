"""The readers' copy on real files: a Parquet file per published table version behind views in a small
DuckDB file, replaced by a rename, so readers keep their snapshot; a table not republished costs nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from ecommerce_assets.project.relations import BUILD_SUFFIX
from ecommerce_assets.run.duckdb import logs
from ecommerce_assets.run.duckdb.serve import files_folder, write_serving_copy
from ecommerce_assets.run.outputs import staged_path

SKIPS = ("raw", "staging")


class Warehouse:
    """A small warehouse published the way runs publish: each relation's rows, then a publish-log row."""

    def __init__(self, path: Path):
        self.con = duckdb.connect(str(path))
        self.runs = 0
        for schema in ("raw", "staging", "marts", "analyses", "_changes"):
            self.con.execute(f"create schema {schema}")
        logs.create_publish_log(self.con)

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
                f"insert into {logs.PUBLISH_LOG} (run_id, table_name, published_at)"
                " values (?, ?, timestamp '2026-01-01' + to_hours(?::bigint))",
                [run_id, name, self.runs],
            )
        return run_id


def copy_contents(path: Path) -> dict[str, list[tuple]]:
    """Every relation of a readers' copy but its bookkeeping, with its rows in order."""
    with duckdb.connect(str(path), read_only=True) as con:
        views = con.execute(
            "select schema_name, view_name from duckdb_views() where not internal and schema_name <> '_serving'"
            " order by all"
        ).fetchall()
        return {f"{s}.{v}": con.execute(f"select * from {s}.{v} order by all").fetchall() for s, v in views}


def files(path: Path) -> dict[str, list[str]]:
    """relation -> the names of its Parquet files beside the copy."""
    folder = files_folder(path)
    return {d.name: sorted(f.name for f in d.glob("*.parquet")) for d in sorted(folder.iterdir())}


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
        views={
            "staging.stg_orders": "select * from raw.orders",
            "analyses.top": "select * from marts.sales order by customer limit 2",  # reads what readers have
            "analyses.raw_count": "select count(*) as n from raw.orders",  # reads what they have not
        },
    )
    # Neither published nor for readers: a run's unpublished build and a bookkeeping schema.
    wh.con.execute(f"create table marts.sales{BUILD_SUFFIX} as select 1 as x")
    wh.con.execute("create table _changes.log as select 1 as x")
    yield wh
    wh.con.close()


def test_the_first_copy_serves_every_published_table_and_view(warehouse, tmp_path):
    path = tmp_path / "wh.serving.duckdb"
    done = write_serving_copy(warehouse.con, path, SKIPS, "run-1")
    assert done.written == ["analyses.raw_count", "analyses.summary", "marts.products", "marts.sales"]
    assert (done.reused, done.views, done.dropped) == ([], ["analyses.top"], [])
    assert copy_contents(path) == {
        "analyses.raw_count": [(6,)],  # a view of raw rows: its rows, as a file
        "analyses.summary": [(3,)],
        "analyses.top": [(0, 2), (1, 2)],  # a view of served tables: a view in the copy
        "marts.products": [(0,), (1,)],
        "marts.sales": [(0, 2), (1, 2), (2, 2)],
    }
    # Each table's file is named after the run that published it.
    assert files(path) == {
        "analyses.raw_count": ["run-1.parquet"],
        "analyses.summary": ["run-1.parquet"],
        "marts.products": ["run-1.parquet"],
        "marts.sales": ["run-1.parquet"],
    }
    assert not staged_path(path).exists()
    assert sorted(r for (r,) in warehouse.con.execute("select database_name from duckdb_databases()").fetchall()) == [
        "system",
        "temp",
        "wh",
    ]


def test_a_table_not_republished_costs_nothing_and_old_files_go_two_publishes_later(warehouse, tmp_path):
    path = tmp_path / "wh.serving.duckdb"
    write_serving_copy(warehouse.con, path, SKIPS, "run-1")
    run = warehouse.run(tables={"marts.sales": "select range as customer, 10 as orders from range(4)"})
    done = write_serving_copy(warehouse.con, path, SKIPS, run)
    assert done.written == ["analyses.raw_count", "marts.sales"]  # the new version, and a view's rows
    assert done.reused == ["analyses.summary", "marts.products"]  # not republished: the same file
    after = copy_contents(path)
    assert after["marts.sales"] == [(0, 10), (1, 10), (2, 10), (3, 10)]
    assert after["analyses.top"] == [(0, 10), (1, 10)]
    assert after["analyses.summary"] == [(3,)]
    # The previous view file's files stay for its readers; the next publish deletes them.
    assert files(path)["marts.sales"] == ["run-1.parquet", "run-2.parquet"]
    run = warehouse.run(tables={"marts.sales": "select 1 as customer, 1 as orders"})
    done = write_serving_copy(warehouse.con, path, SKIPS, run)
    assert files(path)["marts.sales"] == ["run-2.parquet", "run-3.parquet"] and done.files_deleted == 2

    # A relation dropped from the warehouse goes from the copy; a table no run published (made by
    # hand) is written under the run's name every time.
    warehouse.con.execute("drop table marts.products")
    warehouse.con.execute("drop view analyses.top")
    warehouse.con.execute("create table marts.by_hand as select 7 as x")
    done = write_serving_copy(warehouse.con, path, SKIPS, "run-4")
    assert done.dropped == ["marts.products"] and "marts.by_hand" in done.written
    assert set(copy_contents(path)) == {"analyses.raw_count", "analyses.summary", "marts.by_hand", "marts.sales"}


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
    write_serving_copy(warehouse.con, path, SKIPS, "run-1")
    # Another process: DuckDB shares one open database per file and process.
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout.readline().split() == ["3", "6"]
        run = warehouse.run(tables={"marts.sales": "select range as customer, 10 as orders from range(4)"})
        assert "marts.sales" in write_serving_copy(warehouse.con, path, SKIPS, run).written
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline().split() == ["3", "6"]  # the old views, over the old file
    finally:
        reader.stdin.close()
        reader.wait(30)
    newcomer = subprocess.run(
        [sys.executable, "-c", READER, str(path)], input="\n", capture_output=True, text=True, check=True
    )
    assert newcomer.stdout.split() == ["4", "40", "4", "40"]


def test_a_copy_that_is_not_ours_is_replaced_and_a_dead_writes_leftovers_go(warehouse, tmp_path):
    path = tmp_path / "wh.serving.duckdb"
    staged = staged_path(path)
    path.write_bytes(b"not a database" * 1000)
    staged.write_bytes(b"half a copy")
    Path(f"{staged}.wal").write_bytes(b"half a wal")
    done = write_serving_copy(warehouse.con, path, SKIPS, "run-1")
    assert len(done.written) == 4 and copy_contents(path)["marts.sales"] == [(0, 2), (1, 2), (2, 2)]
    assert not staged.exists() and not Path(f"{staged}.wal").exists()


def test_a_write_that_fails_leaves_the_old_copy_as_it_was(warehouse, tmp_path):
    path = tmp_path / "wh.serving.duckdb"
    write_serving_copy(warehouse.con, path, SKIPS, "run-1")
    old = path.read_bytes()
    run = warehouse.run(tables={"marts.sales": "select 1 as customer, 1 as orders"})
    # A view of what readers do not have is written as a file: reading it fails.
    warehouse.con.execute(
        "create view analyses.broken as select error('the view fails when read') as x from raw.orders"
    )
    with pytest.raises(duckdb.Error, match="the view fails when read"):
        write_serving_copy(warehouse.con, path, SKIPS, run)
    assert path.read_bytes() == old
    assert copy_contents(path)["marts.sales"] == [(0, 2), (1, 2), (2, 2)]  # its files are still there
    assert not staged_path(path).exists()
    warehouse.con.execute("drop view analyses.broken")
    write_serving_copy(warehouse.con, path, SKIPS, run)
    assert copy_contents(path)["marts.sales"] == [(1, 1)]
