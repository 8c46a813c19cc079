"""The alert sensors: what they post for real failed runs and failed checks, and how they fail.

The runs execute in-process on an ephemeral instance; the webhook is a local HTTP server.
test_deploy.py shows the same sensors working through the daemon against PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import duckdb
import pytest
from dagster._core.events import DagsterEventType

from ecommerce_assets.defs.alerts import alert_on_error_checks, alert_on_run_failure, send
from ecommerce_assets.paths import SAMPLE_DATA_DIR
from ecommerce_assets_tests.conftest import make_warehouse

UI = "https://dagster.example.com"
PLANT_SQL = "insert into intermediate.int_customer_orders select * from intermediate.int_customer_orders limit 1"


@contextmanager
def webhook():
    """An HTTP server on a free 127.0.0.1 port recording the JSON bodies POSTed to it."""
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.texts = lambda: [b["text"] for b in list(bodies)]
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def hook(monkeypatch):
    with webhook() as server:
        monkeypatch.setenv("ECOMMERCE_ALERT_WEBHOOK_URL", server.url)
        monkeypatch.setenv("ECOMMERCE_UI_URL", UI + "/")
        yield server


def test_without_a_webhook_an_alert_is_one_log_line(monkeypatch, caplog):
    monkeypatch.delenv("ECOMMERCE_ALERT_WEBHOOK_URL", raising=False)
    with caplog.at_level(logging.INFO, logger="test_alert"):
        assert send("Run x failed\ndetails", logging.getLogger("test_alert")) is False
    assert [r.getMessage() for r in caplog.records] == [
        "ECOMMERCE_ALERT_WEBHOOK_URL is not set, no alert sent: Run x failed"
    ]


def test_an_alert_is_slack_json_and_a_failed_delivery_is_only_logged(hook, monkeypatch, caplog):
    log = logging.getLogger("test_alert")
    with caplog.at_level(logging.INFO, logger="test_alert"):
        assert send("Run x failed\ndetails", log) is True
        # Nothing listens there; the token in the URL must not reach the log.
        monkeypatch.setenv("ECOMMERCE_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/secret-token")
        assert send("Run y failed", log) is False
    assert hook.texts() == ["Run x failed\ndetails"]
    sent, lost = (r.getMessage() for r in caplog.records)
    assert sent == "alert sent: Run x failed"
    assert lost.startswith("alert not delivered to ECOMMERCE_ALERT_WEBHOOK_URL (URLError")
    assert lost.endswith(": Run y failed") and "secret-token" not in lost


@pytest.mark.parametrize(
    "url",
    [
        "hooks.example.com/services/T0/B0/secret-token",  # no scheme: urllib's error quotes the URL
        "https://hooks.example.com/services/T0/B0/secret token",  # a space: http.client's quotes the path
        "https://hooks.example.com:notaport/secret-token",
    ],
)
def test_a_malformed_webhook_url_is_neither_raised_nor_logged(url, monkeypatch, caplog):
    monkeypatch.setenv("ECOMMERCE_ALERT_WEBHOOK_URL", url)
    with caplog.at_level(logging.INFO, logger="test_alert"):
        assert send("Run z failed", logging.getLogger("test_alert")) is False
    (lost,) = (r.getMessage() for r in caplog.records)
    assert lost.startswith("alert not delivered to ECOMMERCE_ALERT_WEBHOOK_URL (") and lost.endswith(": Run z failed")
    assert "secret" not in lost and "hooks.example.com" not in lost, lost


def test_a_failed_run_posts_its_error_the_assets_left_and_its_link(hook, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(SAMPLE_DATA_DIR, bad)
    with (bad / "raw_orders.csv").open("a") as f:
        f.write("99999,1,not-a-date,completed,5.99\n")
    instance = dg.DagsterInstance.ephemeral()
    run = _run(tmp_path, instance, bad)
    assert run.status == dg.DagsterRunStatus.FAILURE

    failure = next(
        r.event_log_entry.dagster_event
        for r in instance.get_records_for_run(run.run_id, of_type=DagsterEventType.RUN_FAILURE).records
    )
    context = dg.build_run_status_sensor_context(
        sensor_name="alert_on_run_failure", dagster_instance=instance, dagster_run=run, dagster_event=failure
    ).for_run_failure()
    alert_on_run_failure(context)

    (text,) = hook.texts()
    lines = text.splitlines()
    assert lines[0] == f"Run {run.run_id[:8]} of warehouse_job failed."
    assert lines[1].startswith("Error: Failure: 1 asset(s) failed") and "raw_orders.csv" in text
    assert 'Could not convert string "not-a-date"' in text  # the error's detail, not only its first line
    assert lines[-2].startswith("Not materialized (") and "stg_orders" in lines[-2]
    assert lines[-1] == f"{UI}/runs/{run.run_id}"


def test_failed_error_checks_are_posted_once_per_finished_run(hook, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    wh = make_warehouse(tmp_path)
    graph = wh.defs.resolve_asset_graph()
    upstream = [k for k in graph.get_all_asset_keys() if graph.get(k).group_name in ("raw", "staging", "intermediate")]
    build = wh.defs.resolve_job_def("warehouse_job").execute_in_process(
        instance=instance, raise_on_error=False, asset_selection=upstream
    )
    first_tick = dg.build_sensor_context(instance=instance)
    alert_on_error_checks(first_tick)  # starts from now: runs that ended before are not news
    table_checks = {k for k in graph.asset_check_keys if k.asset_key == dg.AssetKey("int_customer_orders")}
    checks_job = wh.defs.resolve_job_def("checks_job").get_subset(
        asset_selection=set(), asset_check_selection=table_checks
    )
    clean = checks_job.execute_in_process(instance=instance, raise_on_error=False)
    tick = dg.build_sensor_context(instance=instance, cursor=first_tick.cursor)
    alert_on_error_checks(tick)
    assert build.success and clean.success and hook.texts() == []

    # Data can no longer fail an ERROR check (staging sets bad rows aside): plant a duplicate key.
    with duckdb.connect(wh.settings.duckdb_path) as con:
        con.execute(PLANT_SQL)
    planted = checks_job.execute_in_process(instance=instance, raise_on_error=False)
    failed = {
        f"{e.asset_key.to_user_string()}.{e.check_name}": e.severity
        for e in planted.get_asset_check_evaluations()
        if not e.passed
    }
    errors = sorted(name for name, severity in failed.items() if severity == dg.AssetCheckSeverity.ERROR)
    assert "int_customer_orders.unique_order_id" in errors

    tick = dg.build_sensor_context(instance=instance, cursor=tick.cursor)
    alert_on_error_checks(tick)
    alert_on_error_checks(dg.build_sensor_context(instance=instance, cursor=tick.cursor))  # nothing new
    (text,) = hook.texts()
    head, *rows, link = text.splitlines()
    assert head == f"{len(errors)} ERROR check(s) failed in run {planted.run_id[:8]} of checks_job:"
    assert sorted(row.removeprefix("- ").split(":")[0] for row in rows) == errors  # WARN failures are not listed
    assert link == f"{UI}/runs/{planted.run_id}"


def _run(tmp_path, instance, data_dir) -> dg.DagsterRun:
    """A run of the raw and staging layers (with their checks) on `data_dir`."""
    wh = make_warehouse(tmp_path, data_dir=data_dir)
    graph = wh.defs.resolve_asset_graph()
    selection = [k for k in graph.get_all_asset_keys() if graph.get(k).group_name in ("raw", "staging")]
    result = wh.defs.resolve_job_def("warehouse_job").execute_in_process(
        instance=instance, raise_on_error=False, asset_selection=selection
    )
    return instance.get_run_by_id(result.run_id)
