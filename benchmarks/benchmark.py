"""Benchmark: the daily job through the Dagster CLI against its SQL without Dagster, the seed's SQL, dbt and dagster-dbt.

    python -m benchmarks.benchmark --customers 1000000 --repeat 3 [--workdir DIR] [--format csv|parquet] [--keep]
        [--seed-scope | --select SELECTION] [--dbt PATH | --no-dbt] [--dbt-project DIR]
    python -m benchmarks.benchmark --customers 100000 --engine spark [--repeat N]

`--engine spark` runs the daily job (`dagster job execute ... -j warehouse_job`) on DuckDB and with
ECOMMERCE_ENGINE=spark (local mode on every core, a 2 GB driver), side by side: wall and CPU time
and peak memory (report-engines.json). Without it:

Generates the data once (raw_*.csv or .parquet files in <workdir>/data; a marker file there skips
that next time), then each repeat runs, in alternating order, these subprocesses, each on a fresh
DuckDB file:

- dagster: `dagster job execute -m ecommerce_assets.definitions -j warehouse_job`, the job the daily
  schedule runs (every asset and check but the churn model's weekly training; churn_scores skips, as
  no model is trained: <workdir>/output starts empty), one step for the warehouse, up to
  ECOMMERCE_CONCURRENCY statements at a time, with DAGSTER_HOME in the workdir; per-asset times are
  read back from the instance's latest run (`duration_s` of each asset's materialization, check
  times from the event timestamps). With --select/--seed-scope: `dagster asset materialize --select
  <those assets>`.
- floor: this module with `--floor`: the project's own engine (`engine.execute`: planner, raw loads,
  materializations, exports, table stats, checks) one statement at a time, with the resource's
  memory_limit/threads and no Dagster. Charts are not SQL: the floor does not draw them.
- seed (CSV data only): `seed_baseline`, the seed tutorial's own SQL (its 4 loads, 11 models and 23
  tests, made to run on DuckDB) with the same settings: what the project is asked to beat.
- dbt build (CSV data only, when dbt is found: --dbt, else `dbt` on PATH, else /opt/dbt-venv/bin/dbt;
  --no-dbt skips it): the seed's dbt project (benchmarks/dbt_seed, or --dbt-project: the seed SQL's
  models and tests for dbt-duckdb, its profile with the dev target's settings: 2 threads, 2GB) by
  `dbt build` on the same files. A `dbt parse` into the run's own target folder prepares the
  manifest and partial parse before the timed build (its time is reported apart), as for dagster-dbt.
- dagster-dbt (the same, when the dbt's folder also has dagster and dagster-dbt): the same project
  as Dagster assets (benchmarks/dagster_dbt_seed.py: DbtProject, @dbt_assets, DbtCliResource, `dbt
  build` streamed) by `<dbt's folder>/dagster asset materialize -f benchmarks/dagster_dbt_seed.py
  --select '*'` in the dbt venv's own Python, with a DAGSTER_HOME of its own in the workdir and its
  manifest prepared by `dbt parse` before the timed run, as a deployment ships one.

dbt is no dependency of the project: a venv of its own keeps its pins away from ours:
    python3 -m venv /opt/dbt-venv && /opt/dbt-venv/bin/pip install dbt-duckdb 'dbt-core<1.12' \
        dagster-dbt 'dagster==1.13.*' duckdb==<ours>
(dbt-core 1.12 needs a parser that its build downloads from GitHub; the same DuckDB keeps the engine
out of the comparison, and the same Dagster keeps Dagster's own version out of it.) The seed's
failing tests count as WARN there (see its dbt_project.yml). A failed dbt or dagster-dbt run is
recorded as FAILED with the tail of its log and the benchmark goes on; a failed dagster, floor or
seed run stops it.

`--seed-scope` runs dagster and floor on what the seed's SQL builds (its 4 raw loads and 11 models,
with their checks), to compare like with like; `--select` on any Dagster asset selection that
includes its upstream assets (every run starts from an empty DuckDB file), without the seed and dbt.

Peak memory is polled from /proc every 50 ms (psutil is not installed) two ways: the sum of RSS over
the subprocess and all its descendants, and the largest single process's own high-water mark (VmHWM).
The report (every contender's wall times side by side, and dagster's ratio to each other one, of the
medians and per repeat) is printed and written to <workdir>/report.json. Without --keep, the data,
the DuckDB files, the dbt targets and the DAGSTER_HOMEs are deleted at the end; report.json stays,
and so do the logs of failed dbt and dagster-dbt runs.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections import Counter
from pathlib import Path

# Only the standard library up here: the --floor subprocess must not pay for importing dagster.

SEED = 42
ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.05
PAGE = os.sysconf("SC_PAGE_SIZE")
# The first line of measure's SystemExit message.
FAILED = re.compile(r"FAILED \(exit (-?\d+)\)")
DBT_PROJECT = Path(__file__).with_name("dbt_seed")
DBT_VENV = Path("/opt/dbt-venv/bin/dbt")
DBT_SUMMARY = re.compile(r"Done\. PASS=\d+ .*TOTAL=\d+")
DAGSTER_DBT_DEFS = Path(__file__).with_name("dagster_dbt_seed.py")
# The contenders that run the dbt project, none of the project's SQL files.
DBT_CONTENDERS = ("dbt build", "dagster-dbt")


# --- data -------------------------------------------------------------------------------------------


def ensure_data(data_dir: Path, customers: int, fmt: str, seed: int) -> dict[str, int]:
    """Generate the raw files unless the marker says they are already there; returns rows per file."""
    from ecommerce_assets import generate

    marker = data_dir / ".benchmark.json"
    wanted = {
        "customers": customers,
        "format": fmt,
        "seed": seed,
        "generator": hashlib.sha256(Path(generate.__file__).read_bytes()).hexdigest()[:16],
    }
    if marker.exists():
        found = json.loads(marker.read_text())
        if {k: found.get(k) for k in wanted} == wanted:
            print(f"data: reusing {data_dir}", flush=True)
            return found["rows"]
    shutil.rmtree(data_dir, ignore_errors=True)  # a stale .csv next to a new .parquet breaks the loads
    print(f"data: generating {customers:,} customers as {fmt} into {data_dir} ...", flush=True)
    started = time.perf_counter()
    rows = generate.generate(data_dir, customers, seed=seed, fmt=fmt)
    print(
        f"data: {', '.join(f'{k}={v:,}' for k, v in rows.items())} in {time.perf_counter() - started:.1f} s", flush=True
    )
    marker.write_text(json.dumps({**wanted, "rows": rows}))
    return rows


# --- measuring a subprocess -------------------------------------------------------------------------


def tree_memory(root: int) -> tuple[int, dict[int, int]]:
    """Summed RSS of `root` and all its descendants, and each one's own peak so far (VmHWM), in bytes."""
    rss, children = {}, {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited meanwhile
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        rss[pid] = int(fields[21]) * PAGE
    total, hwm, stack = 0, {}, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack += children.get(pid, [])
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            hwm[pid] = int(status.split("VmHWM:", 1)[1].split()[0]) * 1024
        except (OSError, IndexError):
            pass
    return total, hwm


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat, idle and iowait excluded)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def measure(cmd: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> dict:
    """Run `cmd` to completion: wall time, CPU time, peak memory, and how busy everything else kept the CPUs.

    Memory is polled from /proc: the summed RSS of the process tree, and each process's VmHWM (the kernel's
    own high-water mark, exact up to the last poll). wait4's ru_maxrss is not used for memory because a child
    inherits its parent's high-water mark at exec; its CPU times are fine. `others_cores` is the machine's
    busy CPU time minus ours over the wall time: other engineers' tests show up there.
    """
    peak, hwm = 0, {}
    done = threading.Event()
    with open(log_path, "wb") as log:
        started_at, t0, busy0 = time.time(), time.perf_counter(), busy_cpu_s()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)

        def poll():
            nonlocal peak
            while not done.is_set():
                total, marks = tree_memory(proc.pid)
                peak = max(peak, total)
                hwm.update(marks)
                done.wait(POLL_S)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall, busy = time.perf_counter() - t0, busy_cpu_s() - busy0
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        poller.join()
    cpu = usage.ru_utime + usage.ru_stime
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
        raise SystemExit(f"FAILED (exit {proc.returncode}): {' '.join(cmd)}\n--- last lines of {log_path} ---\n{tail}")
    return {
        "wall_s": wall,
        "started_at": started_at,
        "ended_at": started_at + wall,
        "cpu_s": cpu,
        "others_cores": max(0.0, busy - cpu) / wall,
        "peak_tree_rss": peak,
        "max_single_rss": max(hwm.values(), default=0),
        "processes": len(hwm),
    }


def sql_fingerprint() -> str:
    """Hash of every SQL file: other engineers editing models mid-benchmark make repeats incomparable."""
    from ecommerce_assets.paths import SQL_DIR

    digest = hashlib.sha256()
    for path in sorted(SQL_DIR.rglob("*.sql")):
        digest.update(str(path.relative_to(SQL_DIR)).encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def fresh_db(path: Path) -> None:
    """No DuckDB file at `path`, nor its readers' copy (the Dagster resource's serving copy: the next run's
    copy must be a new one each time, not an update of the previous run's)."""
    from ecommerce_assets.run.duckdb.serve import serving_path

    for db in (path, serving_path(str(path))):
        for p in (db, Path(f"{db}.wal"), Path(f"{db}.lock")):
            p.unlink(missing_ok=True)
        shutil.rmtree(f"{db}.tmp", ignore_errors=True)
    shutil.rmtree(serving_path(str(path)).with_suffix(""), ignore_errors=True)  # its Parquet files


def env_for(workdir: Path, db: Path, data_dir: Path) -> dict[str, str]:
    return dict(
        os.environ,
        ECOMMERCE_DUCKDB_PATH=str(db),
        ECOMMERCE_DATA_DIR=str(data_dir),
        ECOMMERCE_OUTPUT_DIR=str(workdir / "output"),
        DAGSTER_HOME=str(workdir / "dagster_home"),
        # The subprocesses run in the workdir and import this folder as `benchmarks`.
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    )


# --- dagster ----------------------------------------------------------------------------------------


def run_dagster(workdir: Path, data_dir: Path, repeat: int, assets: list[str] | None) -> dict:
    db = workdir / "dagster.duckdb"
    fresh_db(db)
    dagster = str(Path(sys.executable).parent / "dagster")
    if assets:
        cmd = [dagster, "asset", "materialize", "-m", "ecommerce_assets.definitions", "--select", ",".join(assets)]
    else:  # what the daily schedule runs: every asset and check but the churn model's weekly training
        cmd = [dagster, "job", "execute", "-m", "ecommerce_assets.definitions", "-j", "warehouse_job"]
    result = measure(cmd, env_for(workdir, db, data_dir), workdir, workdir / f"dagster-{repeat}.log")
    result |= dagster_events(workdir / "dagster_home", result["started_at"], result["ended_at"], assets)
    fresh_db(db)
    return result


def run_spark(workdir: Path, data_dir: Path, repeat: int, assets: list[str] | None) -> dict:
    """The same job as `run_dagster` with ECOMMERCE_ENGINE=spark: Spark in local mode on every core,
    its driver given DuckDB's memory limit (2 GB), a fresh warehouse folder each time."""
    warehouse = workdir / "spark-warehouse"
    shutil.rmtree(warehouse, ignore_errors=True)
    env = env_for(workdir, workdir / "unused.duckdb", data_dir) | {
        "ECOMMERCE_ENGINE": "spark",
        "ECOMMERCE_SPARK_MASTER": f"local[{os.cpu_count()}]",
        "ECOMMERCE_WAREHOUSE_PATH": str(warehouse),
        "ECOMMERCE_OUTPUT_DIR": str(workdir / "spark-output"),
        "PYSPARK_SUBMIT_ARGS": "--driver-memory 2g pyspark-shell",
    }
    dagster = str(Path(sys.executable).parent / "dagster")
    cmd = [dagster, "job", "execute", "-m", "ecommerce_assets.definitions", "-j", "warehouse_job"]
    result = measure(cmd, env, workdir, workdir / f"spark-{repeat}.log")
    shutil.rmtree(warehouse, ignore_errors=True)
    return result


def engines(args, workdir: Path, data_dir: Path, rows: dict) -> None:
    """`--engine spark`: the daily job on DuckDB and on Spark, side by side (wall, CPU, peak memory)."""
    runs: dict[str, list[dict]] = {"duckdb": [], "spark": []}
    for i in range(args.repeat):
        for kind in ("duckdb", "spark") if i % 2 == 0 else ("spark", "duckdb"):
            print(f"repeat {i + 1}/{args.repeat} {kind} ...", end=" ", flush=True)
            r = (run_dagster if kind == "duckdb" else run_spark)(workdir, data_dir, i, None)
            runs[kind].append({k: v for k, v in r.items() if k in ENGINE_FIELDS})
            print(f"{r['wall_s']:.1f} s, peak {r['peak_tree_rss'] / 2**20:,.0f} MB", flush=True)
    med = statistics.median
    summary = {
        "customers": args.customers,
        "raw_rows": rows,
        "cores": os.cpu_count(),
        "runs": runs,
        "median": {k: {f: med([r[f] for r in v]) for f in ENGINE_FIELDS} for k, v in runs.items()},
    }
    lines = [
        f"{args.customers:,} customers ({', '.join(f'{k}={v:,}' for k, v in rows.items())}), {os.cpu_count()} cores"
    ]
    lines.append(
        f"{'engine':8} {'wall s':>8} {'cpu s':>8} {'peak tree MB':>13} {'largest process MB':>19} {'others cores':>13}"
    )
    for kind, m in summary["median"].items():
        lines.append(
            f"{kind:8} {m['wall_s']:8.1f} {m['cpu_s']:8.1f} {m['peak_tree_rss'] / 2**20:13,.0f}"
            f" {m['max_single_rss'] / 2**20:19,.0f} {m['others_cores']:13.2f}"
        )
    ratio = summary["median"]["spark"]["wall_s"] / summary["median"]["duckdb"]["wall_s"]
    lines.append(f"spark / duckdb wall: {ratio:.2f}x")
    # PySpark never waits for its JVM, so wait4 does not count the JVM's CPU: it shows as others' cores.
    lines.append("cpu s counts the processes the run waited for: not Spark's JVM (it shows under others cores)")
    print("\n" + "\n".join(lines))
    (workdir / "report-engines.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"\nreport: {workdir / 'report-engines.json'}")


ENGINE_FIELDS = ("wall_s", "cpu_s", "peak_tree_rss", "max_single_rss", "others_cores")


def dagster_events(home: Path, started_at: float, ended_at: float, assets: list[str] | None) -> dict:
    """Per-asset duration_s and rows, per-asset check time and outcome, and the run's timeline, from the
    latest run in `home` (the CLI's, which must have started after `started_at`)."""
    os.environ["DAGSTER_HOME"] = str(home)
    import dagster as dg

    from ecommerce_assets.project.models import load_models
    from ecommerce_assets.project.sources import RAW_TABLES

    names = assets or [r.name for r in RAW_TABLES] + [m.name for m in load_models()]
    with dg.DagsterInstance.get() as instance:
        run = instance.get_runs(limit=1)[0]
        logs = instance.all_logs(run.run_id)
        at = {e.dagster_event.event_type: e.timestamp for e in logs if e.dagster_event}
        if at.get(dg.DagsterEventType.RUN_START, 0) < started_at:
            raise SystemExit(f"the latest run in {home} ({run.run_id}) did not start after the CLI was launched")
        assets = {}
        for name in names:
            entry = instance.get_latest_materialization_event(dg.AssetKey(name))
            if entry is None or entry.run_id != run.run_id:
                print(f"  WARNING: {name} was not materialized by run {run.run_id}", flush=True)
                continue
            meta = entry.asset_materialization.metadata
            assets[name] = {
                "duration_s": meta["duration_s"].value,
                "rows": meta["dagster/row_count"].value,
                "materialized_at": entry.timestamp,
                "checks_s": 0.0,
            }
    checks = {}
    for e in logs:
        if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            ev = e.dagster_event.event_specific_data
            asset = ev.asset_key.to_user_string()
            failing = ev.metadata.get("failing_rows")
            checks[f"{asset}.{ev.check_name}"] = {"passed": ev.passed, "failing": failing.value if failing else None}
            if asset in assets:  # from the asset's materialization event to its last check's event
                assets[asset]["checks_s"] = e.timestamp - assets[asset]["materialized_at"]
    T = dg.DagsterEventType
    # A job runs a step per op (the warehouse, churn_scores): from the first one's start to the last one's end.
    starts = [e.timestamp for e in logs if e.dagster_event and e.dagster_event.event_type == T.STEP_START]
    ends = [e.timestamp for e in logs if e.dagster_event and e.dagster_event.event_type == T.STEP_SUCCESS]
    step_at: dict[str, list[float]] = {}
    for e in logs:
        if e.dagster_event and e.dagster_event.event_type in (T.STEP_START, T.STEP_SUCCESS, T.STEP_FAILURE):
            step_at.setdefault(e.step_key, []).append(e.timestamp)
    phases = next((p for e in logs if e.user_message and (p := parse_phases(e.user_message))), None)
    return {
        "run_id": run.run_id,
        "job": run.job_name,
        "steps": len(starts),
        "assets": assets,
        "checks": checks,
        "phases": phases,
        "step_s_by_key": {k: max(v) - min(v) for k, v in step_at.items()},
        "timeline": {
            "cli_start_to_run_start_s": at[T.RUN_START] - started_at,
            "run_start_to_step_start_s": min(starts) - at[T.RUN_START],
            "step_s": max(ends) - min(starts),
            "step_end_to_cli_exit_s": ended_at - max(ends),
        },
    }


def medians(dicts: list[dict[str, float]]) -> dict[str, float]:
    """Per key (in first-seen order), the median over the dicts that have it."""
    keys = list(dict.fromkeys(k for d in dicts for k in d))
    return {k: statistics.median([d[k] for d in dicts if k in d]) for k in keys}


def check_seconds(messages: list[str]) -> dict[str, float]:
    """Per table, its checks' seconds from the engine's timings table (engine.timings_table)."""
    table = next((m for m in messages if m.startswith("timings, ")), "")
    rows = [line.split() for line in table.splitlines()[2:]]
    return {r[0]: float(r[3]) for r in rows if len(r) == 4 and r[0] != "total" and r[3] != "-"}


def parse_phases(message: str) -> dict | None:
    """The engine's phases line (engine.phases_line) as {"wall": {phase: s}, "statement": {kind: s}}."""
    if not message.startswith("run phases, wall s: "):
        return None
    wall, _, statement = message.removeprefix("run phases, wall s: ").partition("; statement s: ")

    def pairs(text: str) -> dict[str, float]:
        return {name: float(value) for name, value in re.findall(r"([a-z' ,]+?) (\d+\.\d+)(?:, |$)", text)}

    return {"wall": pairs(wall), "statement": pairs(statement)}


def where_the_time_goes(run: dict) -> dict[str, float]:
    """A dagster run's wall time by phase: Dagster's start, the engine's phases (the readers' copy
    runs beside Dagster's event writes), the events and the rest of the warehouse step, the other
    steps (churn scores), and the CLI's exit."""
    wall = run["phases"]["wall"] if run.get("phases") else {}
    timeline, steps = run["timeline"], run.get("step_s_by_key", {})
    warehouse = steps.get("warehouse", timeline["step_s"])
    parts = {
        "Dagster start (CLI to step start)": timeline["cli_start_to_run_start_s"]
        + timeline["run_start_to_step_start_s"],
        **wall,
        "events and the rest of the step": warehouse - sum(wall.values()),
        **{f"step {k}": v for k, v in steps.items() if k != "warehouse"},
    }
    parts["between steps and the CLI's exit"] = run["wall_s"] - sum(parts.values())
    return parts


# --- floor ------------------------------------------------------------------------------------------


def run_floor(workdir: Path, data_dir: Path, repeat: int, assets: list[str] | None) -> dict:
    return _run_lean(workdir, data_dir, repeat, "floor", assets)


def _run_lean(workdir: Path, data_dir: Path, repeat: int, mode: str, assets: list[str] | None = None) -> dict:
    """`--floor` or `--seed` in a subprocess that imports no dagster, on a fresh DuckDB file."""
    from ecommerce_assets.settings import Settings

    db = workdir / f"{mode}.duckdb"
    fresh_db(db)
    env = env_for(workdir, db, data_dir)
    settings = Settings.from_env(env)
    # The same connection settings DuckDBWarehouse.get_connection passes.
    config = {"memory_limit": settings.memory_limit}
    if settings.threads:
        config["threads"] = settings.threads
    if settings.temp_directory:
        config["temp_directory"] = settings.temp_directory
    out = workdir / f"{mode}-{repeat}.json"
    spec = {
        "db": settings.duckdb_path,
        "data_dir": settings.data_dir,
        "config": config,
        "out": str(out),
        "assets": assets,
    }
    flag = {"floor": "--floor", "seed": "--seed-sql"}[mode]
    cmd = [sys.executable, "-m", "benchmarks.benchmark", flag, json.dumps(spec)]
    result = measure(cmd, env, workdir, workdir / f"{mode}-{repeat}.log")
    result |= json.loads(out.read_text())
    fresh_db(db)
    return result


def floor(spec: dict) -> None:
    """The --floor mode: the project's own engine (engine.execute) with one statement at a time on one
    connection, and no orchestrator: every load, model, export and check the Dagster run executes, and
    the same table stats, with nothing around them. The engine hands its events over after the publish,
    so each build's time is its own `duration_s` and each model's checks' time the engine's timings line."""
    t0 = time.perf_counter()
    import duckdb

    from ecommerce_assets.project.models import load_macros, load_models, resolve_deps
    from ecommerce_assets.project.sources import RAW_TABLES
    from ecommerce_assets.run.adapter import Built, Project, Selection
    from ecommerce_assets.run.duckdb.adapter import DuckDBAdapter
    from ecommerce_assets.run.engine import execute
    from ecommerce_assets.run.options import RunOptions

    statements: list[dict] = []

    def timed(asset: str, kind: str, what: str, fn):
        started = time.perf_counter()
        value = fn()
        statements.append({"asset": asset, "kind": kind, "what": what, "s": time.perf_counter() - started})
        return value

    imports_s = time.perf_counter() - t0
    models = timed(
        "", "setup", "parse models", lambda: resolve_deps(load_models(), {r.name: "raw" for r in RAW_TABLES})
    )
    wanted = spec.get("assets")
    nodes = [n for n in [*RAW_TABLES, *models] if wanted is None or n.name in wanted]
    con = timed("", "setup", "connect", lambda: duckdb.connect(spec["db"], config=spec["config"]))
    options = RunOptions(data_dir=Path(spec["data_dir"]), output_dir=Path(spec["out"]).parent / "floor-output")
    adapter = DuckDBAdapter(con, options)
    messages: list[str] = []
    log = types.SimpleNamespace(info=messages.append, warning=print, error=print)
    checks = {}
    project = Project(nodes, load_macros())
    for event in execute(adapter, project, Selection.everything(nodes), log, threading.Event()):
        if isinstance(event, Built):
            statements.append({"asset": event.node.name, "kind": "build", "what": "build", "s": event.duration_s})
        else:
            outcome = event.outcome
            checks[f"{event.node.name}.{event.check.name}"] = {
                "passed": bool(outcome and outcome.passed),
                "failing": outcome.failing if outcome else None,
            }
    for table, seconds in check_seconds(messages).items():
        statements.append({"asset": table.split(".", 1)[1], "kind": "check", "what": "checks", "s": seconds})
    adapter.close()
    con.close()
    Path(spec["out"]).write_text(
        json.dumps(
            {
                "imports_s": imports_s,
                "in_process_s": time.perf_counter() - t0,
                "statements": statements,
                "checks": checks,
                "analysis_date": str(adapter.run.analysis_date),
                "phases": next((p for m in messages if (p := parse_phases(m))), None),
            }
        )
    )


# --- seed -------------------------------------------------------------------------------------------


def run_seed(workdir: Path, data_dir: Path, repeat: int, assets: list[str] | None) -> dict:
    """The seed's own SQL (`seed_baseline`), always its whole scope, with the same connection settings as the floor."""
    return _run_lean(workdir, data_dir, repeat, "seed")


def seed(spec: dict) -> None:
    """The --seed mode: seed_baseline.run on one plain connection; its tests count as checks."""
    t0 = time.perf_counter()
    import duckdb

    from benchmarks import seed_baseline

    imports_s = time.perf_counter() - t0
    con = duckdb.connect(spec["db"], config=spec["config"])
    results = seed_baseline.run(con, spec["data_dir"])
    con.close()
    Path(spec["out"]).write_text(
        json.dumps(
            {
                "imports_s": imports_s,
                "in_process_s": time.perf_counter() - t0,
                "statements": [
                    {"asset": r["name"], "kind": r["kind"], "what": r["kind"], "s": r["s"]} for r in results
                ],
                "checks": {
                    r["name"]: {"passed": not r["failing"], "failing": r["failing"]}
                    for r in results
                    if r["kind"] == "test"
                },
            }
        )
    )


# --- dbt and dagster-dbt -----------------------------------------------------------------------------


def find_dbt(given: str | None) -> str | None:
    """--dbt, else dbt on PATH, else the venv the docstring installs it into."""
    if given:
        return given
    return shutil.which("dbt") or (str(DBT_VENV) if os.access(DBT_VENV, os.X_OK) else None)


def dbt_env(data_dir: Path, db: Path, target: Path, logs: Path) -> dict[str, str]:
    """The environment of a dbt command on the seed's project: the folder of its raw_*.csv files, its
    DuckDB file, and where dbt writes its artifacts and its log."""
    return dict(
        os.environ,
        DBT_SEED_DATA_DIR=str(data_dir),
        DBT_DUCKDB_PATH=str(db),
        # dbt writes target/ and logs/ into the project by default: keep the source tree clean.
        DBT_TARGET_PATH=str(target),
        DBT_LOG_PATH=str(logs),
        # No network but the package registries: tracking would only add its timeouts to the time.
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        # The log is a file: colour codes would only get in the way of reading it and DBT_SUMMARY.
        DBT_USE_COLORS="false",
    )


def dbt_command(dbt: str, command: str, project: Path) -> list[str]:
    return [dbt, command, "--project-dir", str(project), "--profiles-dir", str(project)]


def dbt_summary(log: Path) -> str | None:
    """dbt's own last count line in `log` ("Done. PASS=.. WARN=.. ERROR=.. SKIP=.. NO-OP=.. TOTAL=..")."""
    found = DBT_SUMMARY.findall(log.read_text(errors="replace")) if log.exists() else []
    return found[-1] if found else None


def find_dagster_dbt(dbt: str) -> tuple[str | None, str]:
    """The dagster CLI beside `dbt` (its venv's), if that venv's Python has dagster-dbt; else why not."""
    for folder in dict.fromkeys((Path(dbt).parent, Path(dbt).resolve().parent)):
        dagster, python = folder / "dagster", folder / "python"
        if os.access(dagster, os.X_OK) and os.access(python, os.X_OK):
            found = subprocess.run(
                [str(python), "-c", "import dagster, dagster_dbt; print(dagster.__version__)"],
                env=foreign_python_env(folder),
                capture_output=True,
                text=True,
            )
            if found.returncode == 0:
                return str(dagster), f"dagster {found.stdout.strip()} with dagster-dbt in {folder}"
            return None, f"{python} has no dagster-dbt ({found.stderr.strip().splitlines()[-1:]})"
    return None, f"no dagster and python beside {dbt}"


def foreign_python_env(bin_dir: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: ours) for another venv's programs: its bin/ first on PATH, as if activated
    (DbtCliResource runs the `dbt` it finds there), and nothing of this repo or our venv on sys.path."""
    env = dict(os.environ if env is None else env)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(name, None)
    env["PATH"] = os.pathsep.join([str(bin_dir), *(p for p in env.get("PATH", "").split(os.pathsep) if p)])
    return env


def measure_or_fail(cmd: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> dict:
    """`measure`, but a failure is returned, not raised: {"exit_code", "error" (the log's tail), "log"}.
    For the runs the project is compared with (dbt, dagster-dbt): theirs must not lose the other runs."""
    try:
        return measure(cmd, env, cwd, log_path) | {"exit_code": 0}
    except SystemExit as failed:
        code = FAILED.match(str(failed.code))
        return {"exit_code": int(code[1]) if code else None, "error": str(failed.code), "log": str(log_path)}


def dbt_results(target: Path, since: float) -> dict:
    """What the newest run_results.json under `target` written since `since` says: dbt's own elapsed
    time, its nodes' statuses and times, and each test as a check (WARN counts as failed)."""
    found = [p for p in target.rglob("run_results.json") if p.stat().st_mtime >= since]
    if not found:
        return {"checks": {}}
    results = json.loads(max(found, key=lambda p: p.stat().st_mtime).read_text())
    nodes = results["results"]
    return {
        "dbt_elapsed_s": results["elapsed_time"],
        "dbt_statuses": dict(Counter(str(n["status"]) for n in nodes)),
        "dbt_nodes_s": {n["unique_id"]: n["execution_time"] for n in nodes},
        "checks": {
            n["unique_id"].split(".")[2]: {"passed": n["status"] == "pass", "failing": n.get("failures")}
            for n in nodes
            if n["unique_id"].startswith("test.")
        },
    }


def run_dbt(dbt: str, project: Path, workdir: Path, data_dir: Path, repeat: int, assets: list[str] | None) -> dict:
    """`dbt build` of the seed's project (always its whole scope) on a fresh DuckDB file."""
    base = workdir / f"dbt-{repeat}"
    env = dbt_env(data_dir, workdir / "dbt.duckdb", base / "target", base / "logs")
    return _prepared(dbt_command(dbt, "parse", project), dbt_command(dbt, "build", project), env, workdir, base)


def run_dagster_dbt(
    dagster: str, dbt: str, project: Path, workdir: Path, data_dir: Path, repeat: int, assets: list[str] | None
) -> dict:
    """The seed's project through dagster-dbt (benchmarks/dagster_dbt_seed.py), run by the dbt venv's
    dagster CLI with a DAGSTER_HOME of its own, on a fresh DuckDB file."""
    base = workdir / f"dagster-dbt-{repeat}"
    env = foreign_python_env(
        Path(dagster).parent, dbt_env(data_dir, workdir / "dagster-dbt.duckdb", base / "target", base / "logs")
    )
    env |= {"DAGSTER_HOME": str(workdir / "dagster_dbt_home"), "DBT_SEED_PROJECT_DIR": str(project)}
    cmd = [dagster, "asset", "materialize", "-f", str(DAGSTER_DBT_DEFS), "--select", "*"]
    return _prepared(dbt_command(dbt, "parse", project), cmd, env, workdir, base)


def _prepared(parse: list[str], cmd: list[str], env: dict[str, str], workdir: Path, base: Path) -> dict:
    """`dbt parse` into the run's own target folder (DBT_TARGET_PATH: the manifest and partial parse a
    deployment ships), then `cmd`, timed; each on a fresh DuckDB file. A failure of either is returned."""
    db = Path(env["DBT_DUCKDB_PATH"])
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    fresh_db(db)
    prepared = measure_or_fail(parse, env, workdir, base / "parse.log")
    fresh_db(db)
    if prepared["exit_code"] != 0:
        return prepared | {"stage": "dbt parse", "dir": str(base)}
    log = workdir / f"{base.name}.log"
    started = time.time()
    result = measure_or_fail(cmd, env, workdir, log) | {"prepare_s": prepared["wall_s"], "log": str(log)}
    fresh_db(db)
    if result["exit_code"] != 0:
        return result | {"stage": "run", "dir": str(base)}
    return result | dbt_results(Path(env["DBT_TARGET_PATH"]), started) | {"summary": dbt_summary(log)}


# --- report -----------------------------------------------------------------------------------------


def summarize(args, rows: dict, settings, runs: dict[str, list[dict]]) -> dict:
    med = statistics.median
    dag, flo = runs["dagster"], runs["floor"]
    # Assets and checks as the last floor run found them, in build order (the SQL files may be edited meanwhile).
    n_checks = {st["asset"]: 0 for st in flo[-1]["statements"] if st["asset"]}
    for check in flo[-1]["checks"]:
        n_checks[check.split(".")[0]] += 1
    assets = []
    for name in n_checks:

        def floor_s(run, kind, name=name):
            return sum(s["s"] for s in run["statements"] if s["asset"] == name and s["kind"] == kind)

        got = [r["assets"][name] for r in dag if name in r["assets"]]
        assets.append(
            {
                "asset": name,
                "rows": got[-1]["rows"] if got else None,
                "checks": n_checks[name],
                "dagster_s": med([a["duration_s"] for a in got]) if got else None,
                "floor_s": med([floor_s(r, "build") for r in flo]),
                "dagster_checks_s": med([a["checks_s"] for a in got]) if got else None,
                "floor_checks_s": med([floor_s(r, "check") for r in flo]),
            }
        )
    statements = {}
    for r in flo:
        for s in r["statements"]:
            statements.setdefault((s["asset"], s["kind"], s["what"]), []).append(s["s"])
    slowest = sorted(
        ({"asset": a, "kind": k, "what": w, "median_s": med(v)} for (a, k, w), v in statements.items()),
        key=lambda s: -s["median_s"],
    )
    # dbt's and dagster-dbt's failed runs have no times: only the runs that succeeded count.
    ok = {k: [r for r in v if "wall_s" in r] for k, v in runs.items()}
    ok = {k: v for k, v in ok.items() if v}
    walls = {k: [r["wall_s"] for r in v] for k, v in ok.items()}
    failed = {
        kind: sorted({name for r in ok[kind] for name, c in r["checks"].items() if not c["passed"]}) for kind in ok
    }
    # Each repeat runs the contenders back to back, so a repeat's own ratio shows the noise.
    by_repeat = {k: {r["repeat"]: r["wall_s"] for r in v} for k, v in ok.items()}
    ratios = {
        k: {
            "median": med(walls["dagster"]) / med(walls[k]) if k in walls else None,
            "per_repeat": [
                by_repeat["dagster"][i] / by_repeat[k][i] if i in by_repeat.get(k, {}) else None
                for i in range(args.repeat)
            ],
        }
        for k in runs
        if k != "dagster"
    }
    return {
        "customers": args.customers,
        "format": args.format,
        "seed": args.seed,
        "repeat": args.repeat,
        "scope": "the seed's scope" if args.seed_scope else args.select or "the whole graph",
        "duckdb": {
            "memory_limit": settings.memory_limit,
            "threads": settings.threads or "default",
            "cores": os.cpu_count(),
            "concurrency": settings.concurrency,
        },
        "raw_rows": rows,
        "assets": assets,
        "contenders": list(runs),
        "wall_s": {k: {"median": med(v), "min": min(v), "max": max(v), "all": v} for k, v in walls.items()},
        "wall_s_per_repeat": {k: [by_repeat[k].get(i) for i in range(args.repeat)] for k in ok},
        "failed_runs": {
            k: [{f: r.get(f) for f in ("repeat", "exit_code", "stage", "log", "dir")} for r in v if "wall_s" not in r]
            for k, v in runs.items()
            if len(v) > len(ok.get(k, []))
        },
        "cpu_s": {k: med([r["cpu_s"] for r in v]) for k, v in ok.items()},
        "others_cores": {k: [round(r["others_cores"], 2) for r in v] for k, v in ok.items()},
        # dagster's wall time over each other contender's: of the medians, and per repeat (None where either failed).
        "ratio_dagster_over": ratios,
        "ratio_dagster_over_floor": ratios["floor"]["median"],
        "ratio_dagster_over_floor_per_repeat": ratios["floor"]["per_repeat"],
        "ratio_dagster_over_seed": ratios["seed"]["median"] if "seed" in ratios else None,
        "dbt": {
            k: {
                # `dbt parse` before the timed run; dbt's own elapsed_time (run_results.json) within it.
                "parse_s": med([r["prepare_s"] for r in ok[k]]),
                "dbt_elapsed_s": med([r["dbt_elapsed_s"] for r in ok[k] if "dbt_elapsed_s" in r])
                if any("dbt_elapsed_s" in r for r in ok[k])
                else None,
                "statuses": ok[k][-1].get("dbt_statuses"),
                "summary": ok[k][-1].get("summary"),
            }
            for k in DBT_CONTENDERS
            if k in ok
        },
        "seed_breakdown_s": {
            f"{kind}s": med([sum(st["s"] for st in r["statements"] if st["kind"] == kind) for r in runs["seed"]])
            for kind in ("setup", "load", "model", "test")
        }
        if "seed" in runs
        else None,
        "peak_tree_rss": {k: max(r["peak_tree_rss"] for r in v) for k, v in ok.items()},
        "max_single_rss": {k: max(r["max_single_rss"] for r in v) for k, v in ok.items()},
        "processes_in_tree": {k: max(r["processes"] for r in v) for k, v in ok.items()},
        "dagster_timeline_s": {k: med([r["timeline"][k] for r in dag]) for k in dag[0]["timeline"]},
        "dagster_where_s": medians([where_the_time_goes(r) for r in dag]),
        "floor_phases_s": medians([r["phases"]["wall"] | r["phases"]["statement"] for r in flo if r.get("phases")]),
        "dagster_job": dag[-1]["job"],
        "dagster_steps": dag[-1]["steps"],
        "dagster_checks_evaluated": len(dag[-1]["checks"]),
        "floor_breakdown_s": {
            "python start/exit + imports": med([r["wall_s"] - r["in_process_s"] + r["imports_s"] for r in flo]),
            "setup (parse, connect, macros)": med(
                [sum(s["s"] for s in r["statements"] if s["kind"] == "setup") for r in flo]
            ),
            "raw loads + models": med([sum(s["s"] for s in r["statements"] if s["kind"] == "build") for r in flo]),
            "checks": med([sum(s["s"] for s in r["statements"] if s["kind"] == "check") for r in flo]),
        },
        "floor_slowest_statements": slowest[:12],
        "failed_checks": failed,
        "sql_fingerprints": sorted(
            {r["sql_fingerprint"] for k, v in runs.items() if k not in DBT_CONTENDERS for r in v}
        ),
        "runs": runs,
    }


def render(s: dict) -> str:
    def sec(v):
        return "-" if v is None else f"{v:.2f}"

    def mb(v):
        return f"{v / 2**20:,.0f} MB"

    d = s["duckdb"]
    dbt = any(k in DBT_CONTENDERS for k in s["contenders"])
    out = [
        f"ecommerce-assets benchmark: {s['customers']:,} customers, {s['format']}, seed {s['seed']}, "
        f"{s['repeat']} repeat(s); DuckDB memory_limit={d['memory_limit']} threads={d['threads']} on {d['cores']} cores",
        f"dagster runs up to {d['concurrency']} statements at a time (ECOMMERCE_CONCURRENCY); floor and seed run one at a time"
        + ("; dbt build and dagster-dbt the dbt profile's threads (2 in benchmarks/dbt_seed)" if dbt else ""),
        f"dagster ({s['dagster_job']}, {s['dagster_steps']} step(s)) and floor build {s['scope']}; "
        + ("the seed, dbt build and dagster-dbt" if dbt else "the seed")
        + ", where they run, the seed's own 4 loads, 11 models and 23 tests",
        "",
        "rows per raw table: " + ", ".join(f"{k} {v:,}" for k, v in s["raw_rows"].items()),
        "",
        f"{'per asset, median seconds':<34}{'rows':>12}  {'dagster':>8}  {'floor':>8}   checks  {'dagster':>8}  {'floor':>8}",
    ]
    for a in s["assets"]:
        rows = "-" if a["rows"] is None else f"{a['rows']:,}"
        out.append(
            f"  {a['asset']:<34}{rows:>12}  {sec(a['dagster_s']):>8}  {sec(a['floor_s']):>8}   "
            f"{a['checks']:>6}  {sec(a['dagster_checks_s']):>8}  {sec(a['floor_checks_s']):>8}"
        )
    total = {
        k: sum(a[k] or 0 for a in s["assets"]) for k in ("dagster_s", "floor_s", "dagster_checks_s", "floor_checks_s")
    }
    out += [
        f"  {'sum':<34}{'':>12}  {sec(total['dagster_s']):>8}  {sec(total['floor_s']):>8}   "
        f"{sum(a['checks'] for a in s['assets']):>6}  {sec(total['dagster_checks_s']):>8}  {sec(total['floor_checks_s']):>8}",
        "  (dagster: the engine's duration_s = build + export + describe/count/preview + any after_build hook",
        "   (charts); its checks: from the asset's materialization event to its last check event, so they include",
        "   Dagster's event writes and, with concurrency, the statements running beside them. floor: the same",
        "   engine, one statement at a time, no charts: the time up to each asset's build and check events.)",
        "",
        f"total wall time (s)   {'median':>8} {'min':>8} {'max':>8}   {'per repeat':<{8 * s['repeat']}}"
        "   cpu s (median)   cores used by other processes, per run",
    ]
    for k in s["contenders"]:
        each = " ".join(f"{'FAILED' if v is None else f'{v:.2f}':>7}" for v in s["wall_s_per_repeat"].get(k, []))
        if k not in s["wall_s"]:
            out.append(f"  {k:<20}{'FAILED':>8} {'':>8} {'':>8}   {'FAILED, every repeat'}")
            continue
        w = s["wall_s"][k]
        out.append(
            f"  {k:<20}{w['median']:>8.2f} {w['min']:>8.2f} {w['max']:>8.2f}   {each:<{8 * s['repeat']}}"
            f"   {s['cpu_s'][k]:>14.1f}   " + " ".join(f"{c:.2f}" for c in s["others_cores"][k])
        )

    def ratio(v):
        return "FAILED" if v is None else f"{v:.2f}x"

    out += [
        f"  ratio dagster/{k} (medians): {ratio(r['median'])}; dagster/{k} per repeat: "
        + " ".join(ratio(v) for v in r["per_repeat"])
        for k, r in s["ratio_dagster_over"].items()
    ]
    for k, f in s["failed_runs"].items():
        out += [
            f"  {k} FAILED in repeat {r['repeat'] + 1} at {r['stage']} (exit {r['exit_code']}); log: {r['log']}"
            for r in f
        ]
    out += [
        "",
        "dagster wall, median s: "
        + ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v:.2f}" for k, v in s["dagster_timeline_s"].items()),
        f"  ({s['dagster_checks_evaluated']} check evaluations in the last run)",
        "where the dagster run's time goes, median s and share of its median wall "
        "(the readers' copy runs beside the event writes, so they overlap):",
        *(f"  {k:<40}{v:>8.2f}  {v / s['wall_s']['dagster']['median']:>6.1%}" for k, v in s["dagster_where_s"].items()),
        "floor phases, median s (wall, then statement seconds by kind): "
        + ", ".join(f"{k} {v:.2f}" for k, v in s["floor_phases_s"].items()),
        "floor wall, median s: " + ", ".join(f"{k} {v:.2f}" for k, v in s["floor_breakdown_s"].items()),
        *(
            [
                "seed wall, median s (its 4 CSV loads, 11 models, 23 tests): "
                + ", ".join(f"{k} {v:.2f}" for k, v in s["seed_breakdown_s"].items())
            ]
            if s["seed_breakdown_s"]
            else []
        ),
        *(
            f"{k} wall, median s: dbt's own elapsed_time {sec(b['dbt_elapsed_s'])} of it, after a dbt parse "
            f"(not timed) of {sec(b['parse_s'])}; the last run's nodes: "
            + (", ".join(f"{n} {c}" for n, c in sorted(b["statuses"].items())) if b["statuses"] else "no run_results")
            for k, b in s["dbt"].items()
        ),
        "",
        "peak memory, max over repeats   process tree (sum of RSS, /proc every 50 ms)   largest process (VmHWM)",
    ]
    for k in s["peak_tree_rss"]:
        out.append(
            f"  {k:<30}{mb(s['peak_tree_rss'][k]):>20}{mb(s['max_single_rss'][k]):>38}"
            f"   ({s['processes_in_tree'][k]} process(es))"
        )
    out += ["", "slowest floor statements, median s:"]
    out += [
        f"  {st['median_s']:8.2f}  {st['asset'] or '-'} {st['kind']} {st['what']}"
        for st in s["floor_slowest_statements"]
    ]
    if len(s["sql_fingerprints"]) > 1:
        out.append(
            f"WARNING: the SQL files changed during the benchmark ({', '.join(s['sql_fingerprints'])}): "
            "repeats ran different SQL"
        )
    for k, names in s["failed_checks"].items():
        if names:
            out.append(f"checks that failed ({k}): {', '.join(names)}")
    return "\n".join(out)


# --- main -------------------------------------------------------------------------------------------


def selected_assets(selection: str | None, seed_scope: bool) -> list[str]:
    """The assets a --select or --seed-scope run builds. Their upstream assets must be among them:
    every run starts from an empty DuckDB file."""
    import dagster as dg

    from benchmarks import seed_baseline
    from ecommerce_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    if seed_scope:  # the seed's loads and models are named like our assets, plus what they read here (the rejects)
        seeds = {dg.AssetKey(name) for name, kind, _ in seed_baseline.statements("") if kind in ("load", "model")}
        keys = dg.AssetSelection.assets(*seeds).upstream().resolve(graph)
    else:
        try:
            keys = dg.AssetSelection.from_string(selection).resolve(graph)
        except dg.DagsterInvalidSubsetError as e:
            raise SystemExit(f"--select {selection!r}: {e}") from None
    missing = dg.AssetSelection.assets(*keys).upstream().resolve(graph) - keys
    if not keys or missing:
        raise SystemExit(
            f"--select {selection!r} selects no asset"
            if not keys
            else f"--select {selection!r} leaves out upstream assets {sorted(k.to_user_string() for k in missing)}: "
            "every run starts from an empty DuckDB file, so select them too ('*name' selects name and all it reads)"
        )
    return sorted(k.to_user_string() for k in keys)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", help="default: <tmp>/ecommerce-bench-<customers>")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--keep", action="store_true", help="keep the data, DuckDB files, dbt targets and DAGSTER_HOMEs"
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--seed-scope", action="store_true", help="dagster and floor build only what the seed's SQL builds"
    )
    scope.add_argument(
        "--select", help="Dagster asset selection for dagster and floor, with its upstream assets; no seed nor dbt run"
    )
    dbt = parser.add_mutually_exclusive_group()
    dbt.add_argument("--dbt", help=f"the dbt executable (default: dbt on PATH, else {DBT_VENV} if there)")
    dbt.add_argument("--no-dbt", action="store_true", help="skip dbt build and dagster-dbt even where dbt is installed")
    parser.add_argument(
        "--dbt-project", default=str(DBT_PROJECT), help=f"the dbt project they build (default: {DBT_PROJECT})"
    )
    parser.add_argument(
        "--engine",
        choices=("duckdb", "spark"),
        default="duckdb",
        help="spark: the daily job on DuckDB and on Spark (local mode) side by side, instead of the contenders",
    )
    parser.add_argument("--floor", help=argparse.SUPPRESS)  # internal: the floor subprocess
    parser.add_argument("--seed-sql", help=argparse.SUPPRESS)  # internal: the seed's SQL subprocess
    args = parser.parse_args(argv)
    if args.floor:
        return floor(json.loads(args.floor))
    if args.seed_sql:
        return seed(json.loads(args.seed_sql))
    if args.customers is None or args.customers < 0 or args.repeat < 1:
        parser.error("--customers N (>= 0) is required and --repeat must be >= 1")
    if args.dbt and not os.access(args.dbt, os.X_OK):
        parser.error(f"--dbt {args.dbt}: not an executable file")

    from ecommerce_assets.settings import Settings

    assets = selected_assets(args.select, args.seed_scope) if args.select or args.seed_scope else None
    workdir = Path(args.workdir or Path(tempfile.gettempdir()) / f"ecommerce-bench-{args.customers}").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    rows = ensure_data(data_dir, args.customers, args.format, args.seed)
    home, dbt_home = workdir / "dagster_home", workdir / "dagster_dbt_home"
    for h in (home, dbt_home):
        h.mkdir(exist_ok=True)
        (h / "dagster.yaml").touch()
    # No churn model from an earlier --keep run: churn_scores skips in every run (the weekly job trains it).
    shutil.rmtree(workdir / "output", ignore_errors=True)
    if args.engine == "spark":
        return engines(args, workdir, data_dir, rows)

    runners = {"dagster": run_dagster, "floor": run_floor}
    if args.format == "csv" and not args.select:  # the seed's SQL reads CSV files only, and builds its own scope
        runners["seed"] = run_seed
    dbt = None if args.no_dbt else find_dbt(args.dbt)
    if args.no_dbt:
        print("dbt: --no-dbt, dbt build and dagster-dbt skipped", flush=True)
    elif dbt is None:
        print(f"dbt: none on PATH nor at {DBT_VENV} (--dbt names one), dbt build and dagster-dbt skipped", flush=True)
    elif "seed" not in runners:
        print("dbt: the seed's project reads CSV files and builds its own scope (no --select), skipped", flush=True)
    else:
        project = Path(args.dbt_project).resolve()
        runners["dbt build"] = functools.partial(run_dbt, dbt, project)
        dagster_dbt, note = find_dagster_dbt(dbt)
        print(f"dbt: {dbt}; dagster-dbt: {note}" + ("" if dagster_dbt else ", skipped"), flush=True)
        if dagster_dbt:
            runners["dagster-dbt"] = functools.partial(run_dagster_dbt, dagster_dbt, dbt, project)
    runs: dict[str, list[dict]] = {kind: [] for kind in runners}
    for i in range(args.repeat):
        order = list(runners)
        for kind in order if i % 2 == 0 else reversed(order):
            print(f"repeat {i + 1}/{args.repeat} {kind} ...", end=" ", flush=True)
            sql = sql_fingerprint()
            r = runners[kind](workdir, data_dir, i, assets)
            r["repeat"] = i
            # The SQL files as this run read them (the dbt contenders read the dbt project's instead).
            r["sql_fingerprint"] = sql if sql == sql_fingerprint() else "changed during the run"
            runs[kind].append(r)
            if "wall_s" not in r:  # dbt's or dagster-dbt's failure: recorded, the other runs go on
                print(f"FAILED at {r['stage']}, the benchmark goes on\n{r['error']}", flush=True)
                continue
            print(
                f"{r['wall_s']:.2f} s (cpu {r['cpu_s']:.1f} s; other processes used {r['others_cores']:.2f} cores),"
                f" peak {r['peak_tree_rss'] / 2**20:,.0f} MB",
                flush=True,
            )

    summary = summarize(args, rows, Settings.from_env(env_for(workdir, workdir / "x.duckdb", data_dir)), runs)
    print()
    print(render(summary))
    report = workdir / "report.json"
    report.write_text(json.dumps(summary, indent=2, default=str))
    if not args.keep:
        # The logs of failed dbt and dagster-dbt runs stay: the report names them.
        kept = {Path(r[k]) for v in runs.values() for r in v if "wall_s" not in r for k in ("log", "dir") if r.get(k)}
        for p in [
            data_dir,
            home,
            dbt_home,
            workdir / "output",
            *workdir.glob("dagster-*"),
            *workdir.glob("floor-*"),
            *workdir.glob("seed-*"),
            *workdir.glob("dbt-*"),
        ]:
            if p not in kept:
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    print(
        f"\nreport: {report}"
        + ("" if args.keep else " (data, databases, dbt targets and DAGSTER_HOMEs deleted; --keep keeps them)")
    )


if __name__ == "__main__":
    main()
