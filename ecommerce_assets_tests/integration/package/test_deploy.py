"""The deployment of deploy/, for real: PostgreSQL, dagster-webserver, dagster-daemon and the proxy.

In the order a team meets it: the package installed from a wheel (not the checkout) into a
throwaway venv; a PostgreSQL server of its own on a free port, with a password; deploy/'s
dagster.yaml and workspace.yaml as $DAGSTER_HOME and deploy/'s environment file; `dagster instance
migrate`; the webserver and the daemon as two processes, with the units' umask, writing into
folders set up as the README's Deploy section sets them up (a readers' group, setgid). Then, while
the every-minute schedule comes due: two runs launched back to back through GraphQL (the second
stays QUEUED until the first ends), and a checks-only run on a table with a planted duplicate key
(data alone can no longer fail an ERROR check: staging sets such rows aside), which fails its run.
The failed run and the failed check each reach a local HTTP server standing in for the chat
webhook; the schedule's run materializes every asset and runs every check.

The same services then serve three more tests: nginx started as deploy/'s proxy unit starts it
(TLS, a password on every path), the secrets (the database password, the webhook URL) looked for
everywhere a user or a log could see them, and the modes of the files the runs wrote. Every process
is stopped at the end, whatever happens, and the module checks that none is left. Everything
listens on 127.0.0.1.
"""

from __future__ import annotations

import base64
import fcntl
import grp
import hashlib
import http.client
import importlib.util
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import ssl
import stat as modes
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
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
# Distinctive, so that the secrets test finds them wherever they would have leaked.
PG_PASSWORD = "pg-password-7c41e9d2"
WEBHOOK_TOKEN = "webhook-token-3f8a61b0"
# Ceiling on the services' start and the runs' waits (typical: see the README's Deploy section).
DEADLINE_S = 240
# The table that gets a duplicate key, and the ERROR check that must catch it.
PLANTED = ("int_customer_orders", "unique_order_id")
# The folders the runs write for readers (README, Deploy: group ecommerce-readers, setgid).
READERS_FOLDERS = ("warehouse", "output")
UMASK = 0o027  # the units' UMask=


def _load_deploy_script(name: str):
    """A script of deploy/ (not a package: it is copied to /etc/ecommerce-assets) as a module."""
    spec = importlib.util.spec_from_file_location(f"deploy_{name}", DEPLOY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


proxy_conf = _load_deploy_script("proxy_conf")


@dataclass
class Deployment:
    python: Path  # the wheel's venv
    work: Path  # the services' working directory
    home: Path  # $DAGSTER_HOME
    logs: Path  # the services' output: what the journal holds in production
    env: dict[str, str]
    web_port: int
    instance: dg.DagsterInstance
    hook: object  # the webhook stand-in
    readers_gid: int
    groups: dict[str, str]  # asset -> group
    all_assets: set[str]
    all_checks: set[str]
    deadline: float
    stack: ExitStack  # stops everything started for the module, the last started first
    started: list[subprocess.Popen]
    mark: Callable[[str], None]

    @property
    def duckdb_path(self) -> Path:
        return self.work / "warehouse" / "prod.duckdb"


@dataclass
class Runs:
    first: str
    second: str
    checks: str
    scheduled: dg.DagsterRun
    seen: set  # (first's status, second's status) while the first ran


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("deployment")
    started_at = time.monotonic()
    timings: dict[str, float] = {}

    def mark(phase: str) -> None:
        timings[phase] = round(time.monotonic() - started_at, 1)
        print(f"{timings[phase]:6.1f} s  {phase}")

    pg_bin = _postgres_bin()
    graph = defs.resolve_asset_graph()
    groups = {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    all_checks = {f"{k.asset_key.to_user_string()}.{k.name}" for k in graph.asset_check_keys}

    python = _venv_with_this_venvs_packages(tmp_path / "venv", _build_wheel(tmp_path))
    work = tmp_path / "work"  # the services' working directory, outside the checkout
    shutil.copytree(ROOT / "data", work / "data")
    readers_gid = _readers_group()
    for name in READERS_FOLDERS:
        (work / name).mkdir()
        os.chown(work / name, -1, readers_gid)
        (work / name).chmod(0o2750)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home)
    shutil.copy(DEPLOY / "workspace.yaml", home)
    logs = tmp_path / "logs"
    logs.mkdir()
    mark("wheel installed")

    started: list[subprocess.Popen] = []
    with ExitStack() as stack, pytest.MonkeyPatch.context() as monkeypatch:
        deadline = time.monotonic() + DEADLINE_S
        hook = stack.enter_context(webhook())
        pg_port = _start_postgres(pg_bin, stack, started)
        mark("postgres up")
        web_port = free_port()
        env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("ECOMMERCE_", "DAGSTER_", "PROXY_")) and k not in {"PYTHONPATH", "PYTHONHOME"}
            },
            **proxy_conf.read_env(DEPLOY / "ecommerce-assets.env"),
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(pg_port),
            "DAGSTER_PG_PASSWORD": PG_PASSWORD,
            "DAGSTER_WEBSERVER_PORT": str(web_port),
            "ECOMMERCE_DATA_DIR": str(work / "data"),
            "ECOMMERCE_DUCKDB_PATH": str(work / "warehouse" / "prod.duckdb"),
            "ECOMMERCE_OUTPUT_DIR": str(work / "output"),
            "ECOMMERCE_DUCKDB_MEMORY_LIMIT": "1GB",
            "ECOMMERCE_SCHEDULE_CRON": "* * * * *",
            # A path like a chat's webhook, with a token in it: the stand-in answers every path.
            "ECOMMERCE_ALERT_WEBHOOK_URL": f"{hook.url}/services/T0/B0/{WEBHOOK_TOKEN}",
            "ECOMMERCE_UI_URL": f"http://127.0.0.1:{web_port}",
        }
        assert env["ECOMMERCE_TARGET"] == "prod" and env["ECOMMERCE_SCHEDULE_DEFAULT_STATUS"] == "running"
        assert (env["DAGSTER_PG_DB"], env["DAGSTER_PG_USER"]) == ("dagster", PG_USER)

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
        assert (found["assets"], found["checks"], found["target"]) == (len(groups), len(all_checks), "prod")
        mark("schema migrated, definitions probed")

        # As the units start them: no --port (DAGSTER_WEBSERVER_PORT), the units' umask.
        workspace = str(home / "workspace.yaml")
        for name, args in [
            ("webserver", ["-m", "dagster_webserver", "-h", "127.0.0.1", "-w", workspace]),
            ("daemon", ["-m", "dagster._daemon", "run", "-w", workspace]),
        ]:
            _spawn(
                [python, *args], cwd=work, env=env, log=logs / f"{name}.log", stack=stack, started=started, umask=UMASK
            )
        _wait_for(lambda: _http_ok(f"http://127.0.0.1:{web_port}/server_info"), deadline, "webserver", logs)
        mark("webserver up")

        for key, value in env.items():
            if key.startswith("DAGSTER_"):
                monkeypatch.setenv(key, value)
        yield Deployment(
            python=python,
            work=work,
            home=home,
            logs=logs,
            env=env,
            web_port=web_port,
            instance=stack.enter_context(dg.DagsterInstance.from_config(str(home))),
            hook=hook,
            readers_gid=readers_gid,
            groups=groups,
            all_assets=set(groups),
            all_checks=all_checks,
            deadline=deadline,
            stack=stack,
            started=started,
            mark=mark,
        )

    mark("everything stopped")
    # Every process the module started, and everything those started, is gone.
    assert not _leftovers(started, tmp_path)
    print(f"timings (s since start): {timings}")


@pytest.fixture(scope="module")
def runs(deployment: Deployment) -> Runs:
    """The runs of the deployment test, for every test that reads what runs leave behind."""
    d, instance = deployment, deployment.instance
    client = _graphql_client(d.web_port)

    def submit(selection: list[str]) -> str:
        return client.submit_job_execution("warehouse_job", asset_selection=selection)

    # Small runs while the schedule's whole-graph run comes due (each run costs a process start
    # and a definitions load), all queued at once so that the scheduled run comes before or
    # after all of them. The first builds the layers up to the planted table; the second
    # touches only raw tables; the third runs the planted table's checks.
    first = submit(sorted(a for a, g in d.groups.items() if g in ("raw", "staging", "intermediate")))
    second = submit(sorted(a for a, g in d.groups.items() if g == "raw"))
    planted_checks = sorted(c.split(".")[1] for c in d.all_checks if c.split(".")[0] == PLANTED[0])
    assert PLANTED[1] in planted_checks
    checks = _launch_checks(d.web_port, [(PLANTED[0], name) for name in planted_checks])
    launched = [first, second, checks]
    seen = set()
    while time.monotonic() < d.deadline and not instance.get_run_by_id(first).is_finished:
        seen.add((instance.get_run_by_id(first).status, instance.get_run_by_id(second).status))
        time.sleep(0.3)
    d.mark("first run done")

    # Plant the duplicate under the runs' own writer lock (a run starting meanwhile waits), and
    # with the services' umask: this process writes into the readers' folder too.
    with open(f"{d.duckdb_path}.lock", "w") as lock, _umask(UMASK):
        fcntl.flock(lock, fcntl.LOCK_EX)
        with duckdb.connect(str(d.duckdb_path)) as con:
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

    _wait_for(all_done, d.deadline, "the runs to finish", d.logs)
    d.mark("runs done")
    # Both alerts about the checks run (the failed run, the failed check): test_deployment reads them.
    _wait_for(lambda: sum(checks[:8] in t for t in d.hook.texts()) >= 2, d.deadline, "the alerts", d.logs)
    d.mark("alerts received")
    return Runs(first=first, second=second, checks=checks, scheduled=scheduled_run(), seen=seen)


@pytest.mark.slow
def test_deployment(deployment: Deployment, runs: Runs):
    d, instance = deployment, deployment.instance
    assert (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.QUEUED) in runs.seen, runs.seen
    launched = [runs.first, runs.second, runs.checks]
    records = {r: instance.get_run_record_by_id(r) for r in launched}
    statuses = {r: rec.dagster_run.status for r, rec in records.items()}
    assert statuses[runs.first] == statuses[runs.second] == dg.DagsterRunStatus.SUCCESS, statuses
    # A failed blocking (ERROR) check fails its run: the checks run is the failed run alerted on.
    assert statuses[runs.checks] == dg.DagsterRunStatus.FAILURE, statuses
    scheduled = runs.scheduled
    # One run at a time: each run started after the one before it ended.
    spans = sorted(
        (r.start_time, r.end_time) for r in [*records.values(), instance.get_run_record_by_id(scheduled.run_id)]
    )
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False)), spans

    # The schedule's first run planned every asset and check but the weekly churn training's,
    # and materialized all of them but the churn scores (no model on the bundled sample).
    assert scheduled.status == dg.DagsterRunStatus.SUCCESS
    assert _planned(instance, scheduled.run_id) == d.all_assets - set(TRAINING_ASSETS)
    skipped = d.all_assets - _materialized(instance, scheduled.run_id)  # the training's too
    assert {d.groups[a] for a in skipped} <= {"churn"}, skipped
    evaluations = _check_evaluations(instance, scheduled.run_id)
    assert {c for c in d.all_checks if c.split(".")[0] not in skipped} <= set(evaluations) <= d.all_checks
    assert not [c for c, e in evaluations.items() if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]

    # The alerts: the failed run, and the planted duplicate's ERROR check, each with the run's link.
    planted = f"{PLANTED[0]}.{PLANTED[1]}"
    assert not _check_evaluations(instance, runs.checks)[planted].passed
    link = f"http://127.0.0.1:{d.web_port}/runs/{runs.checks}"
    texts = d.hook.texts()
    assert any(t.startswith(f"Run {runs.checks[:8]} of checks_job failed.") and t.endswith(link) for t in texts)
    assert any(
        t.startswith(f"1 ERROR check(s) failed in run {runs.checks[:8]} of checks_job") and planted in t for t in texts
    )
    assert not [t for t in texts for r in (runs.first, runs.second, scheduled.run_id) if r[:8] in t]


# --- The proxy --------------------------------------------------------------------------------


@dataclass
class Proxy:
    https: str  # https://127.0.0.1:<port>
    http: str  # the plain-HTTP port's URL
    tls: ssl.SSLContext  # trusts the proxy's self-signed certificate only
    user: tuple[str, str]
    folder: Path  # as /etc/ecommerce-assets and /run/ecommerce-assets-proxy: etc/, run/
    access_log: Path

    def request(self, method: str, path: str, body: dict | None = None, auth=None, headers=None, base=None):
        return _http(f"{base or self.https}{path}", method, body, auth, self.tls, headers)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        status, _, answer = self.request("POST", "/graphql", {"query": query, "variables": variables or {}}, self.user)
        assert status == 200, (status, answer[:2000])
        return json.loads(answer)


@pytest.fixture(scope="module")
def proxy(deployment: Deployment) -> Proxy:
    """nginx as deploy/'s unit starts it: the unit's commands, deploy/'s files, the test's paths."""
    d = deployment
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    for program in (nginx, "openssl"):
        if not shutil.which(program):
            _missing(f"no {program} (apt-get install nginx openssl; .ci/run installs them)")
    # As root, nginx's workers run as www-data and read the password file at every request: the
    # folder must let them in (pytest's tmp_path is root's only).
    folder = Path(tempfile.mkdtemp(prefix="ecommerce-proxy-"))
    d.stack.callback(shutil.rmtree, folder, ignore_errors=True)
    folder.chmod(0o755)
    etc, run = folder / "etc", folder / "run"
    etc.mkdir(mode=0o755)
    run.mkdir(mode=0o755)  # the unit's RuntimeDirectory=
    for name in ("nginx.conf", "proxy_conf.py"):
        shutil.copy(DEPLOY / name, etc)

    # The certificate and the password file as the README's Deploy section makes them.
    (etc / "tls").mkdir(mode=0o755)
    _run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", etc / "tls/key.pem"]
        + ["-out", etc / "tls/cert.pem"]
    )
    user = ("alice", "correct horse battery staple")
    hashed = _run(["openssl", "passwd", "-6", "-stdin"], input=user[1]).strip()
    (etc / "htpasswd").write_text(f"{user[0]}:{hashed}\n")
    if os.geteuid() == 0:
        os.chown(etc / "htpasswd", 0, grp.getgrnam("www-data").gr_gid)
    (etc / "htpasswd").chmod(0o640)

    # deploy/'s environment file with this machine's values after it (a later line wins), the
    # secrets included: the rendered configuration must hold none of them.
    https_port, http_port = free_port(), free_port()
    values = {
        **{k: d.env[k] for k in ("DAGSTER_PG_PASSWORD", "DAGSTER_WEBSERVER_PORT", "ECOMMERCE_ALERT_WEBHOOK_URL")},
        "PROXY_HTTPS_LISTEN": f"127.0.0.1:{https_port}",
        "PROXY_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "PROXY_TLS_CERT": str(etc / "tls/cert.pem"),
        "PROXY_TLS_KEY": str(etc / "tls/key.pem"),
        "PROXY_HTPASSWD": str(etc / "htpasswd"),
        "PROXY_ACCESS_LOG": str(d.logs / "proxy-access.log"),
    }
    lines = [(DEPLOY / "ecommerce-assets.env").read_text(), *(f"{k}={v}" for k, v in values.items())]
    (etc / "ecommerce-assets.env").write_text("\n".join(lines) + "\n")

    commands = _unit_commands(
        DEPLOY / "ecommerce-assets-proxy.service",
        {
            "/opt/ecommerce-assets/venv/bin/python": str(d.python),
            "/usr/sbin/nginx": nginx,
            "/etc/ecommerce-assets/": f"{etc}/",
            "/run/ecommerce-assets-proxy/": f"{run}/",
        },
    )
    for command in commands["ExecStartPre"]:
        _run(command)
    (start,) = commands["ExecStart"]
    # SIGQUIT: the unit's KillSignal=.
    _spawn(
        start, cwd=run, env=None, log=d.logs / "proxy.log", stack=d.stack, started=d.started, stop_signal=signal.SIGQUIT
    )
    tls = ssl.create_default_context(cafile=etc / "tls/cert.pem")
    proxy = Proxy(
        f"https://127.0.0.1:{https_port}",
        f"http://127.0.0.1:{http_port}",
        tls,
        user,
        folder,
        d.logs / "proxy-access.log",
    )
    _wait_for(lambda: _quietly(lambda: proxy.request("GET", "/")[0] == 401), time.monotonic() + 60, "the proxy", d.logs)
    d.mark("proxy up")
    return proxy


SECURITY_HEADERS = {
    "strict-transport-security": "max-age=31536000",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


def _secure(headers: dict[str, str]) -> bool:
    """The proxy's headers, once each; its CSP beside the UI's own (a browser applies both)."""
    return {k: headers.get(k) for k in SECURITY_HEADERS} == SECURITY_HEADERS and headers.get(
        "content-security-policy", ""
    ).endswith("frame-ancestors 'none'")


@pytest.mark.slow
def test_the_proxy_lets_only_the_team_in(deployment: Deployment, proxy: Proxy):
    d = deployment
    raw = sorted(a for a, g in d.groups.items() if g == "raw")[:1]
    launch = {"query": LAUNCH, "variables": {"params": _launch_params("warehouse_job", assets=raw)}}
    status, got, page = proxy.request("GET", "/", auth=proxy.user)
    assert status == 200 and got["content-type"].startswith("text/html"), (status, page[:500])
    assert _secure(got), got
    script = re.search(rb'<script[^>]+src="(/_next/static/[^"]+)"', page).group(1).decode()  # the UI's code
    runs_before = len(d.instance.get_run_records())

    # Without the password, with a wrong one or an unknown user: 401 everywhere, the UI's pages
    # and code, the API (a launch included) and the websocket, and nothing reaches the webserver.
    requests = [
        ("GET", "/", None, {}),
        ("GET", "/runs", None, {}),
        ("GET", script, None, {}),
        ("GET", "/server_info", None, {}),
        ("GET", "/graphql?query=%7B__typename%7D", None, {}),
        ("POST", "/graphql", launch, {}),
        ("GET", "/graphql", None, _websocket_headers()),
        ("GET", "/no/such/page", None, {}),
    ]
    for auth in [None, (proxy.user[0], "wrong"), ("mallory", proxy.user[1])]:
        for method, path, body, headers in requests:
            status, got, _ = proxy.request(method, path, body, auth, headers)
            assert status == 401 and got.get("www-authenticate") == 'Basic realm="ecommerce-assets"', (auth, path)
            assert _secure(got), (auth, path, got)
    assert len(d.instance.get_run_records()) == runs_before

    # With it: the UI, its code, the API and the websocket (the UI's live updates) answer.
    status, got, _ = proxy.request("GET", script, auth=proxy.user)
    assert status == 200 and "javascript" in got["content-type"], (status, got)
    status, got, _ = proxy.request("GET", "/graphql", auth=proxy.user, headers=_websocket_headers())
    assert status == 101 and got["sec-websocket-accept"] == _websocket_accept(), got
    answer = proxy.graphql(LAUNCH, launch["variables"])["data"]["launchRun"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    run_id = answer["run"]["runId"]
    assert d.instance.get_run_by_id(run_id).asset_selection == {dg.AssetKey(raw[0])}
    # Stopped at once: the run was only there to show that a launch goes through.
    stopped = proxy.graphql(TERMINATE, {"runId": run_id})["data"]["terminateRun"]
    assert stopped["__typename"] == "TerminateRunSuccess", stopped
    # The proxy's log says who launched it (the UI records no user).
    _wait_for(
        lambda: f" {proxy.user[0]} [" in proxy.access_log.read_text(), time.monotonic() + 30, "the access log", d.logs
    )
    assert re.search(
        rf'^127\.0\.0\.1 {proxy.user[0]} \[.*\] "POST /graphql HTTP/1\.1" 200 ', proxy.access_log.read_text(), re.M
    )

    # Plain HTTP gets a redirect to HTTPS and nothing else, on either port, password or not.
    for base, location in [(proxy.http, "https://127.0.0.1/runs"), (f"http{proxy.https[5:]}", f"{proxy.https}/runs")]:
        for auth in (None, proxy.user):
            status, got, body = proxy.request("GET", "/runs", auth=auth, base=base)
            assert (status, got["location"]) == (301, location) and b"Dagster" not in body, (base, status, got)


@pytest.mark.slow
def test_secrets_reach_no_log_event_metadata_or_page(deployment: Deployment, runs: Runs, proxy: Proxy):
    """The database password and the webhook URL, both in use (the alerts went out), appear in no
    run log, service log, event, run record, asset metadata, UI configuration page or proxy file."""
    d = deployment
    secrets = {
        "the database password": PG_PASSWORD,
        "the webhook URL": d.env["ECOMMERCE_ALERT_WEBHOOK_URL"],
        "the webhook's token": WEBHOOK_TOKEN,
    }
    places: dict[str, str] = {}
    # Runs' stdout/stderr and the sensors' tick logs ($DAGSTER_HOME/storage), the services' output
    # (the journal's, in production), the proxy's configuration and logs, the exports.
    for folder in (d.home, d.logs, proxy.folder / "run", d.work / "output"):
        for path in folder.rglob("*"):
            if path.is_file():
                places[str(path)] = path.read_bytes().decode(errors="replace")
    assert [p for p in places if runs.checks in p and "compute_logs" in p], "no run log of the checks run"
    # The event log, the runs (their config and tags), the asset metadata and check results, the
    # sensors' ticks and cursors: every table of the instance's database.
    places.update(_database_text(d.env))
    assert PLANTED[1] in places["event_logs"], "the failed check's evaluation is not in the event log"
    # The UI's configuration pages, as a browser gets them through the proxy.
    places.update(_ui_pages(proxy))
    assert "max_concurrent_runs: 1" in places["instance"], places["instance"][:2000]  # dagster.yaml's

    leaks = sorted({(what, where) for where, text in places.items() for what, s in secrets.items() if s in text})
    assert not leaks, leaks


@pytest.mark.slow
def test_what_runs_write_for_readers_is_theirs_and_nobody_elses(deployment: Deployment, runs: Runs):
    """The warehouse, the readers' copy (view file and Parquet folder) and the exports: the
    readers' group (from the setgid folders) may read them, others may not."""
    d = deployment
    stem = d.duckdb_path.name.removesuffix(".duckdb")
    wanted = [
        d.duckdb_path,
        d.duckdb_path.with_name(f"{stem}.serving.duckdb"),
        d.duckdb_path.with_name(f"{stem}.serving"),
    ]
    assert all(p.exists() for p in wanted) and any((d.work / "output").rglob("*.csv")), wanted
    wrong = []
    for folder in READERS_FOLDERS:
        for path in [d.work / folder, *(d.work / folder).rglob("*")]:
            st = path.lstat()
            readable = modes.S_IRGRP | (modes.S_IXGRP | modes.S_ISGID if modes.S_ISDIR(st.st_mode) else 0)
            if st.st_gid != d.readers_gid or st.st_mode & readable != readable or st.st_mode & modes.S_IRWXO:
                wrong.append(f"{path.relative_to(d.work)}: {modes.filemode(st.st_mode)} gid {st.st_gid}")
    assert not wrong, wrong


def test_the_proxy_configuration_takes_its_values_from_the_environment_file(tmp_path):
    template = (DEPLOY / "nginx.conf").read_text()
    env = proxy_conf.read_env(DEPLOY / "ecommerce-assets.env")
    text = proxy_conf.render(template, env, "ecommerce-assets.env")
    assert not proxy_conf.NAME.search(text) and f"ssl_certificate {env['PROXY_TLS_CERT']};" in text
    assert f"proxy_pass http://127.0.0.1:{env['DAGSTER_WEBSERVER_PORT']};" in text
    # Every server asks for the password but the one that only redirects plain HTTP to HTTPS.
    servers = text.split("    server {")[1:]
    assert len(servers) == 2 and "return 301 https://" in servers[0] and "proxy_pass" not in servers[0]
    assert "auth_basic_user_file" in servers[1] and "auth_basic off" not in text

    # A missing value or one that would end the directive: one line naming it, nothing written.
    env_file = tmp_path / "bad.env"
    for line, message in [
        ("PROXY_TLS_CERT=", "set PROXY_TLS_CERT (the proxy's nginx.conf uses them)"),
        ("PROXY_HTPASSWD=/etc/x; allow all", "PROXY_HTPASSWD='/etc/x; allow all': use one word"),
    ]:
        env_file.write_text((DEPLOY / "ecommerce-assets.env").read_text() + line + "\n")
        done = subprocess.run(
            [sys.executable, DEPLOY / "proxy_conf.py", env_file, DEPLOY / "nginx.conf", tmp_path / "out.conf"],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 1 and not (tmp_path / "out.conf").exists()
        assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


def test_deploy_env_file_is_valid_prod_settings(tmp_path):
    env = proxy_conf.read_env(DEPLOY / "ecommerce-assets.env")
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


TERMINATE = """
mutation Terminate($runId: String!) {
  terminateRun(runId: $runId) {
    __typename
    ... on PythonError { message }
    ... on TerminateRunFailure { message }
  }
}
"""


def _launch_params(job: str, assets: list[str] = (), checks: list[tuple[str, str]] | None = None) -> dict:
    selector = {
        "repositoryLocationName": "ecommerce_assets",
        "repositoryName": "__repository__",
        "jobName": job,
        "assetSelection": [{"path": [asset]} for asset in assets],
    }
    if checks is not None:
        selector["assetCheckSelection"] = [{"assetKey": {"path": [asset]}, "name": name} for asset, name in checks]
    return {"selector": selector, "runConfigData": {}}


def _launch_checks(port: int, checks: list[tuple[str, str]]) -> str:
    """Launches checks_job on `checks` only, by a plain GraphQL POST (the client has no check selection)."""
    body = {"query": LAUNCH, "variables": {"params": _launch_params("checks_job", checks=checks)}}
    status, _, answer = _http(f"http://127.0.0.1:{port}/graphql", "POST", body)
    assert status == 200, answer[:2000]
    result = json.loads(answer)["data"]["launchRun"]
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


# --- PostgreSQL -------------------------------------------------------------------------------


def _postgres_bin() -> Path:
    """The server binaries: on PATH, else Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    _missing("no PostgreSQL server binaries (apt-get install postgresql; .ci/run installs them)")


def _missing(message: str) -> None:
    """CI installs every server the tests start: there a missing one fails, elsewhere it skips."""
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


def _run(args, input: str | None = None) -> str:
    done = subprocess.run([str(a) for a in args], input=input, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{shlex.join(str(a) for a in args)}: {done.stdout[-1000:]}{done.stderr[-2000:]}"
    return done.stdout


@contextmanager
def _umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _readers_group() -> int:
    """A group that is not the services' own, as ecommerce-readers is not: only setgid hands it down."""
    if os.geteuid() == 0:
        return 65534  # Debian's nogroup; root may give a folder any group
    others = [g for g in os.getgroups() if g != os.getegid()]
    return others[0] if others else os.getegid()


def _unit_commands(unit: Path, paths: dict[str, str]) -> dict[str, list[list[str]]]:
    """A systemd unit's Exec*= command lines, split as systemd splits them, with its paths replaced."""
    commands: dict[str, list[list[str]]] = {}
    for line in unit.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.startswith("Exec"):
            for old, new in paths.items():
                value = value.replace(old, new)
            commands.setdefault(key, []).append(shlex.split(value))
    return commands


# --- HTTP -------------------------------------------------------------------------------------


def _http(url: str, method="GET", body: dict | None = None, auth=None, tls=None, headers=None):
    """(status, headers with lower-case names, body) of one request; redirects are not followed."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=60, context=tls)
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    headers = dict(headers or {})
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    try:
        connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), data, headers)
        response = connection.getresponse()
        got: dict[str, str] = {}
        for name, value in response.getheaders():  # a header sent twice shows as "a, b"
            got[name.lower()] = f"{got[name.lower()]}, {value}" if name.lower() in got else value
        return response.status, got, response.read()
    finally:
        connection.close()


WEBSOCKET_KEY = base64.b64encode(b"ecommerce-assets").decode()


def _websocket_headers() -> dict[str, str]:
    """An opening handshake as the UI's GraphQL subscriptions send it."""
    return {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": WEBSOCKET_KEY,
        "Sec-WebSocket-Protocol": "graphql-ws",
    }


def _websocket_accept() -> str:
    """What a websocket server answers to WEBSOCKET_KEY (RFC 6455): the webserver, not nginx, did."""
    digest = hashlib.sha1((WEBSOCKET_KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    return base64.b64encode(digest).decode()


# --- Where a secret could show ----------------------------------------------------------------


def _database_text(env: dict[str, str]) -> dict[str, str]:
    """Every row of every table of the instance's database, as text, by table."""
    import psycopg2  # installed by dagster-postgres

    connection = psycopg2.connect(
        host="127.0.0.1", port=env["DAGSTER_PG_PORT"], user=PG_USER, password=PG_PASSWORD, dbname=env["DAGSTER_PG_DB"]
    )
    try:
        cursor = connection.cursor()
        cursor.execute("select table_name from information_schema.tables where table_schema = 'public'")
        tables = [row[0] for row in cursor.fetchall()]
        text = {}
        for table in tables:
            cursor.execute(f'select t::text from "{table}" t')
            text[table] = "\n".join(row[0] for row in cursor.fetchall())
        return text
    finally:
        connection.close()


REPOSITORY = '{repositoryLocationName: "ecommerce_assets", repositoryName: "__repository__"}'
UI_PAGES = {
    # Deployment: configuration (the instance's dagster.yaml) and daemons (their errors).
    "instance": """{ instance { info daemonHealth { allDaemonStatuses {
        daemonType lastHeartbeatErrors { message stack } } } } }""",
    "code locations": """{ workspaceOrError { ... on Workspace { locationEntries {
        name displayMetadata { key value } locationOrLoadError { ... on PythonError { message } } } } } }""",
    # Each run's configuration and tags.
    "runs": "{ runsOrError(limit: 500) { ... on Runs { results { runId runConfigYaml tags { key value } } } } }",
    # Resources' configuration, and the alert sensors' ticks with their errors and logs.
    "resources and sensors": f"""{{ repositoryOrError(repositorySelector: {REPOSITORY}) {{ ... on Repository {{
        allTopLevelResourceDetails {{ name configuredValues {{ key value }} }}
        sensors {{ name sensorState {{ ticks(limit: 200) {{
            status error {{ message stack }} logEvents {{ events {{ message }} }} }} }} }} }} }} }}""",
}


def _ui_pages(proxy: Proxy) -> dict[str, str]:
    """What the UI's configuration pages show, read through the proxy as a browser reads them."""
    pages = {}
    for name, query in UI_PAGES.items():
        answer = proxy.graphql(query)
        assert "errors" not in answer, (name, answer)
        pages[name] = json.dumps(answer)
    assert len(json.loads(pages["resources and sensors"])["data"]["repositoryOrError"]["sensors"]) >= 2
    return pages
