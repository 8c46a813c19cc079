"""All or nothing: a run publishes in one transaction, whatever happens to it; readers never block."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.instance.ref import InstanceRef  # a second process reads the same run storage

from ecommerce_assets.generate import generate
from ecommerce_assets.project.relations import BUILD_SUFFIX, DELTA_SUFFIX
from ecommerce_assets.run.duckdb.logs import CHECK_LOG, PUBLISH_LOG
from ecommerce_assets.run.duckdb.serve import serving_path
from ecommerce_assets.run.engine import publishable
from ecommerce_assets_tests.conftest import DATA, make_warehouse

CUSTOMERS = 1500
KILLS = 10


def fingerprint(database: Path) -> dict[str, tuple]:
    """Every relation's row count and content hash; timestamps and run ids (which run) left out, doubles
    rounded (DuckDB's parallel sums differ in their last bits from run to run)."""
    with duckdb.connect(str(database), read_only=True) as con:
        relations = con.execute(
            "select table_schema, table_name from information_schema.tables order by all"
        ).fetchall()
        prints = {}
        for schema, name in relations:
            if name.endswith((BUILD_SUFFIX, DELTA_SUFFIX)):
                continue  # a killed run's unpublished builds: no reader sees them, the next run drops them
            columns = con.execute(
                "select column_name, data_type from information_schema.columns"
                " where table_schema = ? and table_name = ? order by ordinal_position",
                [schema, name],
            ).fetchall()
            values = [
                f"round({c}, 6)" if kind in ("DOUBLE", "FLOAT") else c
                for c, kind in columns
                if not kind.startswith("TIMESTAMP") and c != "run_id"
            ]
            prints[f"{schema}.{name}"] = con.execute(
                f"select count(*), sum(hash({', '.join(values)}))::hugeint from {schema}.{name}"
            ).fetchone()
        return prints


def cli_build(database: Path, data_dir: Path, output: Path, extra_env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "ECOMMERCE_DUCKDB_PATH": str(database), "ECOMMERCE_OUTPUT_DIR": str(output)}
    env.pop("DAGSTER_HOME", None)
    env |= extra_env or {}
    return subprocess.Popen(
        [sys.executable, "-m", "ecommerce_assets.cli", "build", "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def watch(process: subprocess.Popen, started: threading.Event, publishing: threading.Event) -> list[str]:
    """Reads the run's output on a thread: `started` once its step starts, `publishing` once the
    builds and checks are done (the line logged just before the publish transaction)."""
    lines: list[str] = []

    def read() -> None:
        for line in process.stdout:
            lines.append(line)
            if "STEP_START" in line:
                started.set()
            if "timings, up to" in line:
                publishing.set()

    threading.Thread(target=read, daemon=True).start()
    return lines


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory):
    """What a run publishes from data A, then what a run on data B publishes over it."""
    root = tmp_path_factory.mktemp("publish")
    for name, seed in (("a", 1), ("b", 2)):
        generate(root / name, CUSTOMERS, seed=seed)
    database = root / "warehouse.duckdb"
    first = cli_build(database, root / "a", root / "out")
    assert first.wait(300) == 0, first.stdout.read()
    published = {"a": tables(database)}
    started, publishing = threading.Event(), threading.Event()
    second = cli_build(database, root / "b", root / "out")
    lines = watch(second, started, publishing)
    assert started.wait(120)
    step_started = time.monotonic()
    assert second.wait(300) == 0, "".join(lines)
    published["b"] = tables(database)
    assert published["a"] != published["b"]
    return root, database, published, time.monotonic() - step_started


def hold_still(process: subprocess.Popen) -> None:
    """SIGSTOP, returning once the process is stopped: from then on it cannot take the lock."""
    process.send_signal(signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "tT":
        assert time.monotonic() < deadline, f"process {process.pid} did not stop"
        time.sleep(0.001)


def lock_holder(database: Path) -> int | None:
    """The process holding the writer lock beside `database` (Linux: /proc/locks), or None."""
    inode = os.stat(f"{database}.lock").st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[1] == str(inode):
            return int(fields[4])
    return None


def locked_within(lock, seconds: float) -> bool:
    """Takes the exclusive lock on the open file `lock` if it comes free within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)


def tables(database: Path) -> dict[str, tuple]:
    """The published tables' fingerprints, without the publish and check logs (they grow with every run)."""
    return {t: v for t, v in fingerprint(database).items() if t not in (PUBLISH_LOG, CHECK_LOG)}


def test_a_run_killed_at_any_moment_leaves_one_runs_warehouse_and_the_next_run_needs_no_cleanup(two_datasets):
    """Ten runs, each killed with SIGKILL, one after the other on the same file, alternating data
    A and B so that each run would change every table: nine at moments spread over the step (loads,
    models, checks), one as the publish starts. Each killed run is the next run of the one before:
    it starts on what that one left, with no cleanup by hand. The last run is left to finish.

    Each run is launched while the one before runs (as a queued run would be), so it has loaded
    Dagster and waits on the writer lock when the one before dies: its moment counts from there."""
    root, database, published, step_seconds = two_datasets
    moments = [step_seconds * (k + 0.5) / (KILLS - 1) for k in range(KILLS - 1)] + ["publish"]

    def launch(data: str) -> tuple[subprocess.Popen, threading.Event, threading.Event, list[str]]:
        started, publishing = threading.Event(), threading.Event()
        run = cli_build(database, root / data, root / "out")
        return run, started, publishing, watch(run, started, publishing)

    state, outcomes = "b", []
    following = launch("a")
    released = time.monotonic()
    for k, moment in enumerate(moments):
        data = "a" if k % 2 == 0 else "b"
        run, started, publishing, lines = following
        following = launch("b" if data == "a" else "a")
        assert started.wait(120), "".join(lines)  # it started on what the last killed run left
        began = max(time.monotonic(), released)
        if moment == "publish":
            assert publishing.wait(120), "".join(lines)
        else:
            time.sleep(max(0.0, began + moment - time.monotonic()))
        # Take the writer lock as the killed run's process dies, before the next run gets it (held
        # still meanwhile: it polls the lock and could win the race), and look at the file
        # meanwhile: it opens, read-only, without any repair.
        waiting = following[0] if following[0].poll() is None else None
        if waiting:
            hold_still(waiting)
        if waiting and lock_holder(database) == waiting.pid:
            # The run ended its run before this moment (a busy machine runs it faster or slower than
            # the step measured alone), and the queued run took the lock before it was held still:
            # nothing is killed now. The run published whole; the queued run goes on, and the next
            # kill looks at what it leaves.
            waiting.send_signal(signal.SIGCONT)
            assert run.wait(60) == 0, "".join(lines)
            outcomes.append("ended before its kill")
            state = data
            released = time.monotonic()
            continue
        run.send_signal(signal.SIGKILL)
        with open(f"{database}.lock", "a+") as lock:
            if not locked_within(lock, 60):  # the queued run had it first: let it finish
                if waiting:
                    waiting.send_signal(signal.SIGCONT)
                    waiting = None
                fcntl.flock(lock, fcntl.LOCK_EX)
            run.wait(30)
            now = tables(database)
        if waiting:
            waiting.send_signal(signal.SIGCONT)
        released = time.monotonic()
        differ = {d: sorted(t for t in now if now[t] != published[d].get(t)) for d in (state, data)}
        assert now in (published[state], published[data]), f"run {k} killed at {moment}: a mix of two runs: {differ}"
        outcomes.append("published" if now == published[data] and data != state else "as before")
        state = data if now == published[data] else state
    assert "as before" in outcomes  # kills did land before the publish
    last, *_ = following  # the run after the tenth kill (data a: the tenth had b), left to finish
    assert last.wait(300) == 0
    assert tables(database) == published["a"]
    with duckdb.connect(str(database), read_only=True) as con:
        left = con.execute("select table_name from duckdb_tables() where table_name like '%\\_\\_%' escape '\\'")
        assert left.fetchall() == []  # the killed runs' builds were dropped by the runs after them


def test_a_reader_holding_the_readers_copy_never_blocks_a_run_nor_is_blocked(tmp_path):
    data = tmp_path / "data"
    generate(data / "a", 500, seed=1)
    generate(data / "b", 800, seed=2)
    wh = make_warehouse(tmp_path, data_dir=data / "a")
    assert wh.run().success
    copy = serving_path(wh.settings.duckdb_path)
    query = "select count(*) from marts.fct_customer_metrics"
    with duckdb.connect(str(copy), read_only=True) as reader:
        assert reader.execute(query).fetchone()[0] == 500
        started = time.monotonic()
        assert wh.run(run_config={"ops": {"warehouse": {"config": {"data_dir": str(data / "b")}}}}).success
        assert time.monotonic() - started < 60  # no wait on the reader (the lock would retry for ~100 s)
        assert reader.execute(query).fetchone()[0] == 500  # the reader's snapshot, whole, unchanged
        # The next reader sees the new run (another process: DuckDB shares one open file per process).
        newcomer = (
            f"import duckdb; print(duckdb.connect({str(copy)!r}, read_only=True).execute({query!r}).fetchone()[0])"
        )
        assert subprocess.run([sys.executable, "-c", newcomer], capture_output=True, text=True).stdout.strip() == "800"
    # The readers' copy has the marts, ml and analyses (and which run each came from), not the raw
    # rows, staging's views of them or the intermediate tables.
    with duckdb.connect(str(copy), read_only=True) as reader:
        schemas = {
            s for (s,) in reader.execute("select distinct table_schema from information_schema.tables").fetchall()
        }
    assert schemas == {"marts", "ml", "analyses", "_serving"}


def test_what_a_failed_or_blocked_node_holds_back_from_the_publish():
    deps = {
        "raw_a": (),
        "raw_b": (),
        "rejects": ("raw_a", "raw_b"),
        "stg_a": ("raw_a", "rejects"),
        "stg_b": ("raw_b", "rejects"),
        "mart": ("stg_a", "stg_b"),
        "raw_c": (),
        "stg_c": ("raw_c",),
    }
    views = {"stg_a", "stg_b", "stg_c"}
    built = set(deps)
    assert publishable(built, set(), deps, views) == built
    # A blocked table holds back what is built from it, and what views not published read.
    assert publishable(built, {"mart"}, deps, views) == built - {"mart"}
    # A blocked view: its upstream too (the old view would show the new rows), then everything
    # built from those, and the upstream of every view held that way.
    assert publishable(built, {"stg_a"}, deps, views) == {"raw_c", "stg_c"}
    assert publishable(built - {"raw_c"}, {"stg_c"}, deps, views) == {
        "raw_a",
        "raw_b",
        "rejects",
        "stg_a",
        "stg_b",
        "mart",
    }


def test_an_export_that_comes_empty_is_reported_by_warn_checks(tmp_path):
    """No key is broken by an empty order-line export, yet it must not pass unnoticed: the raw
    table lost more than half its rows against the last publish, and products earn nothing."""
    data = tmp_path / "data"
    shutil.copytree(DATA, data)
    wh = make_warehouse(tmp_path, data_dir=data)
    assert wh.run().success
    (data / "raw_order_items.csv").write_text("order_item_id,order_id,product_id,quantity,unit_price\n")
    result = wh.run()
    assert result.success  # WARN: the run publishes, the UI and the CLI show the warnings
    failed = {
        (e.asset_key.to_user_string(), e.check_name) for e in result.get_asset_check_evaluations() if not e.passed
    }
    assert {("raw_order_items", "no_sudden_row_drop"), ("fct_product_performance", "revenue_not_zero")} <= failed
    evaluation = next(
        e for e in result.get_asset_check_evaluations() if e.check_name == "no_sudden_row_drop" and not e.passed
    )
    assert "| 10 | 0 |" in evaluation.metadata["failing_sample"].value  # last published rows, rows now


def test_the_allowed_drop_is_a_setting(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(DATA, data)
    wh = make_warehouse(tmp_path, data_dir=data, ECOMMERCE_MAX_ROW_DROP="100")
    assert wh.run().success
    (data / "raw_customers.csv").write_text("customer_id,email,first_name,last_name,country,created_at\n")
    result = wh.run()
    assert not [
        e for e in result.get_asset_check_evaluations() if e.check_name == "no_sudden_row_drop" and not e.passed
    ]
    with pytest.raises(ValueError, match=r"ECOMMERCE_MAX_ROW_DROP='150': use a whole number from 0 to 100"):
        make_warehouse(tmp_path, ECOMMERCE_MAX_ROW_DROP="150")


def test_a_run_whose_process_died_is_marked_failed_by_the_next_run(two_datasets, tmp_path):
    """Killed runs do not stay STARTED: the lock file names the run that holds the warehouse, and
    the next run to take it marks that run failed in Dagster's run storage."""
    root, _, _, _ = two_datasets
    home = tmp_path / "dagster_home"
    home.mkdir()
    database = tmp_path / "warehouse.duckdb"
    env = {"DAGSTER_HOME": str(home)}
    started, publishing = threading.Event(), threading.Event()
    killed = cli_build(database, root / "a", tmp_path / "out", env)
    lines = watch(killed, started, publishing)
    assert started.wait(120), "".join(lines)
    time.sleep(0.5)
    killed.send_signal(signal.SIGKILL)
    killed.wait(30)
    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    (dead,) = instance.get_runs()
    assert dead.status == dg.DagsterRunStatus.STARTED  # nothing else could tell Dagster
    following = cli_build(database, root / "a", tmp_path / "out", env)
    output = following.communicate(timeout=300)[0]
    assert following.returncode == 0, output
    assert f"run {dead.run_id} died while it held the warehouse: marked failed" in output
    assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
