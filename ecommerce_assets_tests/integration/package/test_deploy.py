"""The deployment of deploy/, for real: PostgreSQL, dagster-webserver and dagster-daemon.

In the order a team meets it: the package installed from a wheel (not the checkout) into a
throwaway venv; a PostgreSQL server of its own on a free port, with a password; deploy/'s
dagster.yaml and workspace.yaml as $DAGSTER_HOME and deploy/'s environment file; `dagster instance
migrate`; the webserver and the daemon as two processes. Then, while the every-minute schedule
comes due: two runs launched back to back through GraphQL (the second stays QUEUED until the first
ends), and a checks-only run on a table with a planted duplicate key (data alone can no longer
fail an ERROR check: staging sets such rows aside), which fails its run. The failed run and the
failed check each reach a local HTTP server standing in for the chat webhook; the schedule's run
materializes every asset and runs every check. Every process the test started is stopped at the
end, whatever happens, and the test checks that none is left. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from contextlib import ExitStack, suppress
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.events import DagsterEventType

from ecommerce_assets.definitions import defs
from ecommerce_assets.ml.churn.assets import TRAINING_ASSETS
from ecommerce_assets.settings import Settings
from ecommerce_assets_tests.integration.package.test_package import ROOT, _build_wheel, _venv_with_this_venvs_packages
from ecommerce_assets_tests.unit.defs.test_alerts import PLANT_SQL, free_port, webhook

DEPLOY = ROOT / "deploy"
PG_USER = "dagster"
PG_PASSWORD = "test-only-password"
# Ceiling on the whole test's waits (typical: see the README's Deploy section).
DEADLINE_S = 240
# The table that gets a duplicate key, and the ERROR check that must catch it.
PLANTED = ("int_customer_orders", "unique_order_id")


@pytest.mark.slow
def test_deployment(tmp_path, monkeypatch):
    started_at = time.monotonic()
    deadline = started_at + DEADLINE_S
    timings: dict[str, float] = {}

    def mark(phase: str) -> None:
        timings[phase] = round(time.monotonic() - started_at, 1)
        print(f"{timings[phase]:6.1f} s  {phase}")

    pg_bin = _postgres_bin()
    graph = defs.resolve_asset_graph()
    all_assets = {k.to_user_string() for k in graph.get_all_asset_keys()}
    all_checks = {f"{k.asset_key.to_user_string()}.{k.name}" for k in graph.asset_check_keys}
    groups = {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    upto_intermediate = sorted(a for a, g in groups.items() if g in ("raw", "staging", "intermediate"))
    planted_checks = sorted(k.name for k in graph.asset_check_keys if k.asset_key.to_user_string() == PLANTED[0])
    assert PLANTED[1] in planted_checks

    python = _venv_with_this_venvs_packages(tmp_path / "venv", _build_wheel(tmp_path))
    work = tmp_path / "work"  # the services' working directory, outside the checkout
    shutil.copytree(ROOT / "data", work / "data")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home)
    shutil.copy(DEPLOY / "workspace.yaml", home)
    duckdb_path = work / "warehouse" / "prod.duckdb"
    mark("wheel installed")

    started: list[subprocess.Popen] = []  # each one is stopped by `stack`, the last started first
    with ExitStack() as stack:
        hook = stack.enter_context(webhook())
        pg_port = _start_postgres(pg_bin, stack, started)
        mark("postgres up")
        web_port = free_port()
        env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("ECOMMERCE_", "DAGSTER_")) and k not in {"PYTHONPATH", "PYTHONHOME"}
            },
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(pg_port),
            "DAGSTER_PG_DB": "dagster",
            "DAGSTER_PG_USER": PG_USER,
            "DAGSTER_PG_PASSWORD": PG_PASSWORD,
            **_env_file(DEPLOY / "ecommerce-assets.env", prefix="ECOMMERCE_"),
            "ECOMMERCE_DATA_DIR": str(work / "data"),
            "ECOMMERCE_DUCKDB_PATH": str(duckdb_path),
            "ECOMMERCE_OUTPUT_DIR": str(work / "output"),
            "ECOMMERCE_DUCKDB_MEMORY_LIMIT": "1GB",
            "ECOMMERCE_SCHEDULE_CRON": "* * * * *",
            "ECOMMERCE_ALERT_WEBHOOK_URL": hook.url,
            "ECOMMERCE_UI_URL": f"http://127.0.0.1:{web_port}",
        }
        assert env["ECOMMERCE_TARGET"] == "prod" and env["ECOMMERCE_SCHEDULE_DEFAULT_STATUS"] == "running"

        # The definitions load from the wheel's copy of the package, not the checkout's (in
        # parallel with the schema's creation: both take seconds).
        probe = subprocess.Popen([python, "-c", PROBE], cwd=work, env=env, stdout=subprocess.PIPE, text=True)
        stack.callback(probe.kill)
        migrate = subprocess.run(
            [python, "-m", "dagster", "instance", "migrate"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]
        found = json.loads(probe.communicate(timeout=120)[0].strip().splitlines()[-1])
        assert Path(found["package"]).is_relative_to(tmp_path / "venv")
        assert (found["assets"], found["checks"], found["target"]) == (len(all_assets), len(all_checks), "prod")
        mark("schema migrated, definitions probed")

        workspace = str(home / "workspace.yaml")
        logs = tmp_path / "logs"
        logs.mkdir()
        for name, args in [
            ("webserver", ["-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(web_port), "-w", workspace]),
            ("daemon", ["-m", "dagster._daemon", "run", "-w", workspace]),
        ]:
            _spawn([python, *args], cwd=work, env=env, log=logs / f"{name}.log", stack=stack, started=started)
        _wait_for(lambda: _http_ok(f"http://127.0.0.1:{web_port}/server_info"), deadline, "webserver", logs)
        mark("webserver up")

        for key, value in env.items():
            if key.startswith("DAGSTER_"):
                monkeypatch.setenv(key, value)
        instance = stack.enter_context(dg.DagsterInstance.from_config(str(home)))
        client = _graphql_client(web_port)

        def submit(selection: list[str]) -> str:
            return client.submit_job_execution("warehouse_job", asset_selection=selection)

        # Small runs while the schedule's whole-graph run comes due (each run costs a process start
        # and a definitions load), all queued at once so that the scheduled run comes before or
        # after all of them. The first builds the layers up to the planted table; the second
        # touches only raw tables; the third runs the planted table's checks.
        first = submit(upto_intermediate)
        second = submit(sorted(a for a, g in groups.items() if g == "raw"))
        checks = _launch_checks(web_port, [(PLANTED[0], name) for name in planted_checks])
        launched = [first, second, checks]
        seen = set()
        while time.monotonic() < deadline and not instance.get_run_by_id(first).is_finished:
            seen.add((instance.get_run_by_id(first).status, instance.get_run_by_id(second).status))
            time.sleep(0.3)
        assert (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.QUEUED) in seen, seen
        mark("first run done")

        # Plant the duplicate under the runs' own writer lock: a run starting meanwhile waits.
        with open(f"{duckdb_path}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with duckdb.connect(str(duckdb_path)) as con:
                con.execute(PLANT_SQL)

        def scheduled_run() -> dg.DagsterRun | None:
            """The schedule's first run (each minute queues another one)."""
            records = instance.get_run_records(
                dg.RunsFilter(tags={"dagster/schedule_name": "daily_warehouse"}),
                order_by="create_timestamp",
                ascending=True,
                limit=1,
            )
            return records[0].dagster_run if records else None

        def all_done() -> bool:
            scheduled = scheduled_run()
            runs = [instance.get_run_by_id(r) for r in launched] + ([scheduled] if scheduled else [])
            return len(runs) > len(launched) and all(r.is_finished for r in runs)

        _wait_for(all_done, deadline, "the runs to finish", logs)
        mark("runs done")
        records = {r: instance.get_run_record_by_id(r) for r in launched}
        statuses = {r: rec.dagster_run.status for r, rec in records.items()}
        assert statuses[first] == statuses[second] == dg.DagsterRunStatus.SUCCESS, statuses
        # A failed blocking (ERROR) check fails its run: the checks run is the failed run alerted on.
        assert statuses[checks] == dg.DagsterRunStatus.FAILURE, statuses
        scheduled = scheduled_run()
        # One run at a time: each run started after the one before it ended.
        spans = sorted(
            (r.start_time, r.end_time) for r in [*records.values(), instance.get_run_record_by_id(scheduled.run_id)]
        )
        assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False)), spans

        # The schedule's first run planned every asset and check but the weekly churn training's,
        # and materialized all of them but the churn scores (no model on the bundled sample).
        assert scheduled.status == dg.DagsterRunStatus.SUCCESS
        assert _planned(instance, scheduled.run_id) == all_assets - set(TRAINING_ASSETS)
        skipped = all_assets - _materialized(instance, scheduled.run_id)  # the training's too
        assert {groups[a] for a in skipped} <= {"churn"}, skipped
        evaluations = _check_evaluations(instance, scheduled.run_id)
        assert {c for c in all_checks if c.split(".")[0] not in skipped} <= set(evaluations) <= all_checks
        assert not [c for c, e in evaluations.items() if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]

        # The alerts: the failed run, and the planted duplicate's ERROR check, each with the run's link.
        planted = f"{PLANTED[0]}.{PLANTED[1]}"
        assert not _check_evaluations(instance, checks)[planted].passed
        link = f"http://127.0.0.1:{web_port}/runs/{checks}"
        wanted = [
            lambda t: t.startswith(f"Run {checks[:8]} of checks_job failed.") and t.endswith(link),
            lambda t: t.startswith(f"1 ERROR check(s) failed in run {checks[:8]} of checks_job") and planted in t,
        ]
        _wait_for(lambda: all(any(w(t) for t in hook.texts()) for w in wanted), deadline, "the alerts", logs)
        mark("alerts received")
        assert not [t for t in hook.texts() for r in (first, second, scheduled.run_id) if r[:8] in t]

    mark("everything stopped")
    # Every process the test started, and everything those started, is gone.
    assert not _leftovers(started, tmp_path)
    print(f"timings (s since start): {timings}")


def test_deploy_env_file_is_valid_prod_settings(tmp_path):
    env = _env_file(DEPLOY / "ecommerce-assets.env", prefix="ECOMMERCE_")
    settings = Settings.from_env({**env, "ECOMMERCE_DUCKDB_PATH": str(tmp_path / "prod.duckdb")})
    assert settings.target == "prod" and settings.schedule_default_status == "running"
    assert all(
        Path(env[k]).is_absolute() for k in ("ECOMMERCE_DATA_DIR", "ECOMMERCE_DUCKDB_PATH", "ECOMMERCE_OUTPUT_DIR")
    )
    assert settings.schedule_cron == "0 6 * * *"


PROBE = """
import json, ecommerce_assets
from ecommerce_assets.definitions import defs
from ecommerce_assets.settings import Settings
graph = defs.resolve_asset_graph()
print(json.dumps({
    "package": ecommerce_assets.__file__,
    "assets": len(graph.get_all_asset_keys()),
    "checks": len(graph.asset_check_keys),
    "target": Settings.from_env().target,
}))
"""

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}
"""


def _launch_checks(port: int, checks: list[tuple[str, str]]) -> str:
    """Launches checks_job on `checks` only, by a plain GraphQL POST (the client has no check selection)."""
    selector = {
        "repositoryLocationName": "ecommerce_assets",
        "repositoryName": "__repository__",
        "jobName": "checks_job",
        "assetSelection": [],
        "assetCheckSelection": [{"assetKey": {"path": [asset]}, "name": name} for asset, name in checks],
    }
    body = json.dumps({"query": LAUNCH, "variables": {"params": {"selector": selector, "runConfigData": {}}}})
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.load(response)
    result = answer["data"]["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", answer
    return result["run"]["runId"]


def _materialized(instance, run_id: str, kind=DagsterEventType.ASSET_MATERIALIZATION) -> set[str]:
    records = instance.get_records_for_run(run_id, of_type=kind).records
    return {r.event_log_entry.dagster_event.asset_key.to_user_string() for r in records}


def _planned(instance, run_id: str) -> set[str]:
    return _materialized(instance, run_id, DagsterEventType.ASSET_MATERIALIZATION_PLANNED)


def _check_evaluations(instance, run_id: str) -> dict:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records
    evaluations = [r.event_log_entry.dagster_event.event_specific_data for r in records]
    return {f"{e.asset_key.to_user_string()}.{e.check_name}": e for e in evaluations}


def _env_file(path: Path, prefix: str) -> dict[str, str]:
    """The KEY=VALUE lines of a systemd EnvironmentFile, quotes removed."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {k: v.strip().strip('"') for k, v in pairs if k.startswith(prefix)}


# --- PostgreSQL -------------------------------------------------------------------------------


def _postgres_bin() -> Path:
    """The server binaries: on PATH, else Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    message = "no PostgreSQL server binaries (apt-get install postgresql; .ci/run installs them)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _start_postgres(pg_bin: Path, stack: ExitStack, started: list) -> int:
    """A fresh server on a free 127.0.0.1 port, password login only, stopped by `stack`."""
    # PostgreSQL refuses to run as root: as root, the server runs as the `postgres` user, in a
    # directory of its own outside pytest's root-only tmp_path.
    user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="ecommerce-pg-"))
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    (folder / "pwfile").write_text(PG_PASSWORD + "\n")
    if user:
        os.chown(folder, user.pw_uid, user.pw_gid)
        os.chown(folder / "pwfile", user.pw_uid, user.pw_gid)
    as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
    subprocess.run(
        [pg_bin / "initdb", "-D", folder / "data", "-U", PG_USER, "--pwfile", folder / "pwfile"]
        + ["--auth", "scram-sha-256", "--encoding", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
        cwd=folder,
        **as_user,
    )
    port = free_port()
    settings = {"listen_addresses": "127.0.0.1", "port": port, "unix_socket_directories": "", "fsync": "off"}
    _spawn(
        [pg_bin / "postgres", "-D", folder / "data", *(a for k, v in settings.items() for a in ("-c", f"{k}={v}"))],
        cwd=folder,
        env=None,
        log=folder / "postgres.log",
        stack=stack,
        started=started,
        stop_signal=signal.SIGINT,  # PostgreSQL's fast shutdown; SIGTERM waits for clients to leave
        **as_user,
    )

    import psycopg2  # installed by dagster-postgres

    def create_database():
        connection = psycopg2.connect(
            host="127.0.0.1", port=port, user=PG_USER, password=PG_PASSWORD, dbname="postgres", connect_timeout=2
        )
        connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
        try:
            connection.cursor().execute("create database dagster")
        finally:
            connection.close()
        return True

    _wait_for(lambda: _quietly(create_database), time.monotonic() + 30, "PostgreSQL", folder)
    return port


# --- Processes --------------------------------------------------------------------------------


def _spawn(args, cwd, env, log: Path, stack: ExitStack, started: list, stop_signal=signal.SIGTERM, **kwargs):
    """Starts a process in a process group of its own; `stack` stops the whole group."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(a) for a in args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kwargs,
        )
    started.append(process)
    stack.callback(_stop, process, stop_signal)


def _stop(process: subprocess.Popen, stop_signal: int) -> None:
    """Signals the process's group, as systemd stops a unit; SIGKILL for what is left after 30 s."""
    for sig, grace_s in ((stop_signal, 30), (signal.SIGKILL, 10)):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        end = time.monotonic() + grace_s
        while time.monotonic() < end:
            if process.poll() is not None and not _group_members(process.pid):
                return
            time.sleep(0.2)


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group `pgid`."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def _leftovers(processes: list[subprocess.Popen], tmp_path: Path) -> list[str]:
    """Processes still in the test's groups, or running anything from its temp directory."""
    left = [f"pgid {p.pid}: {_group_members(p.pid)}" for p in processes if _group_members(p.pid)]
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(tmp_path) in text and (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            left.append(text)
    return left


def _wait_for(condition, deadline: float, what: str, logs: Path) -> None:
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    tails = {p.name: p.read_text(errors="replace")[-3000:] for p in Path(logs).glob("*.log")}
    pytest.fail(f"timed out waiting for {what}; logs: {json.dumps(tails, indent=1)}")


def _quietly(probe) -> bool:
    try:
        return bool(probe())
    except Exception:
        return False


def _http_ok(url: str) -> bool:
    return _quietly(lambda: urllib.request.urlopen(url, timeout=2).status == 200)


def _graphql_client(port: int):
    from dagster_graphql import DagsterGraphQLClient  # ships with dagster-webserver

    return DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=60)
