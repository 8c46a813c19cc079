"""Alerts: a failed run and a failed ERROR check each post a message to a webhook.

The message is Slack's incoming-webhook format, `{"text": ...}` (Mattermost's incoming webhooks
take it too). ECOMMERCE_ALERT_WEBHOOK_URL is the webhook; without
it a sensor logs one line per alert instead. ECOMMERCE_UI_URL is where the run links point.

Both sensors run in the daemon, never inside a run: an alert that cannot be delivered is logged
in the sensor's tick and cannot fail the run it is about.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request

import dagster as dg
from dagster._core.event_api import RunStatusChangeRecordsFilter
from dagster._core.events import DagsterEventType

WEBHOOK_ENV = "ECOMMERCE_ALERT_WEBHOOK_URL"
UI_ENV = "ECOMMERCE_UI_URL"
DEFAULT_UI_URL = "http://localhost:3000"
TIMEOUT_S = 10
# Names listed in one message before "and N more": a message must stay readable in a chat.
MAX_NAMES = 10
# Finished runs read per tick; more wait for the next tick.
PAGE = 100
RUN_ENDS = (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE)


def run_url(run_id: str) -> str:
    return f"{os.environ.get(UI_ENV, DEFAULT_UI_URL).rstrip('/')}/runs/{run_id}"


def send(text: str, log) -> bool:
    """Posts `text`; True when the webhook answered 2xx. Never raises."""
    url = os.environ.get(WEBHOOK_ENV, "").strip()
    summary = text.splitlines()[0]
    if not url:
        log.info(f"{WEBHOOK_ENV} is not set, no alert sent: {summary}")
        return False
    try:
        # Inside the try: a malformed URL fails here, and its error quotes the URL.
        request = urllib.request.Request(
            url, data=json.dumps({"text": text}).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            response.read()
    except Exception as e:  # whatever the URL or the server does, the sensor's tick goes on
        # The URL itself is a secret (it holds the webhook's token): never log it, nor an error that
        # quotes it. A malformed URL fails with a ValueError or http.client's InvalidURL (not a
        # ValueError), which quote the URL or its path, whole or escaped; URLError and HTTPError
        # (OSErrors) say what went wrong without it.
        reason = _without(str(e), url) if isinstance(e, OSError) else "message not shown, it may quote the URL"
        log.warning(f"alert not delivered to {WEBHOOK_ENV} ({type(e).__name__}: {reason}): {summary}")
        return False
    log.info(f"alert sent: {summary}")
    return True


def _without(message: str, url: str) -> str:
    """`message` with the URL, its host and its path blanked (an OSError names none today)."""
    try:
        parts = urllib.parse.urlsplit(url)
        secrets = {url, parts.netloc, parts.path, parts.query} - {"", "/"}
    except ValueError:
        secrets = {url}
    for secret in sorted(secrets, key=len, reverse=True):
        message = message.replace(secret, "<webhook URL>")
    return message


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES])
    return shown + (f" and {len(names) - MAX_NAMES} more" if len(names) > MAX_NAMES else "")


def _origin(run: dg.DagsterRun) -> str:
    schedule = run.tags.get("dagster/schedule_name")
    sensor = run.tags.get("dagster/sensor_name")
    return f", started by schedule {schedule}" if schedule else f", started by sensor {sensor}" if sensor else ""


def run_failure_text(instance: dg.DagsterInstance, run: dg.DagsterRun, errors: list[str]) -> str:
    """The run, why it failed, the assets it planned and did not materialize, and its link."""
    planned, done = [], set()
    for record in instance.get_records_for_run(
        run.run_id, of_type={DagsterEventType.ASSET_MATERIALIZATION_PLANNED, DagsterEventType.ASSET_MATERIALIZATION}
    ).records:
        event = record.event_log_entry.dagster_event
        name = event.asset_key.to_user_string()
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            done.add(name)
        elif name not in planned:
            planned.append(name)
    missing = [n for n in planned if n not in done]
    lines = [f"Run {run.run_id[:8]} of {run.job_name} failed{_origin(run)}."]
    lines += [f"Error: {e}" for e in errors]
    if missing:
        lines.append(f"Not materialized ({len(missing)} of {len(planned)} assets): {_names(missing)}")
    lines.append(run_url(run.run_id))
    return "\n".join(lines)


def failed_error_checks_text(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """The run's failed ERROR checks with what they found, or None when there are none."""
    failed = []
    for record in instance.get_records_for_run(run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            name = f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name}"
            failed.append(f"- {name}: {evaluation.description}" if evaluation.description else f"- {name}")
    if not failed:
        return None
    head = f"{len(failed)} ERROR check(s) failed in run {run.run_id[:8]} of {run.job_name}{_origin(run)}:"
    shown = failed[:MAX_NAMES] + ([f"- and {len(failed) - MAX_NAMES} more"] if len(failed) > MAX_NAMES else [])
    return "\n".join([head, *shown, run_url(run.run_id)])


def _error_text(message: str, max_lines: int = 8, max_chars: int = 1000) -> str:
    """The head of an error: our failures name the asset, file, line and column over a few lines."""
    text = re.sub(r"^(?:\w+\.)+(\w+: )", r"\1", message.strip())  # dagster._core...Failure: -> Failure:
    lines = [line for line in text.splitlines() if line.strip()][:max_lines]
    text = "\n".join(lines)
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    description=f"Posts each failed run (error, assets not materialized, link) to {WEBHOOK_ENV}.",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def alert_on_run_failure(context: dg.RunFailureSensorContext):
    errors = [
        _error_text(e.event_specific_data.error.message)
        for e in context.get_step_failure_events()
        if e.event_specific_data and e.event_specific_data.error
    ] or [_error_text(context.failure_event.message or "")]
    send(run_failure_text(context.instance, context.dagster_run, errors), context.log)


def finished_runs(instance: dg.DagsterInstance, after: int) -> list:
    """Run-end events (success or failure) after storage id `after`, oldest first."""
    pages = [
        instance.fetch_run_status_changes(
            RunStatusChangeRecordsFilter(status, after_storage_id=after), limit=PAGE, ascending=True
        ).records
        for status in RUN_ENDS
    ]
    # A full page may stop before the other page's last event: read nothing past it this tick,
    # so that no run is skipped.
    end = min((page[-1].storage_id for page in pages if len(page) == PAGE), default=None)
    return sorted((r for page in pages for r in page if end is None or r.storage_id <= end), key=lambda r: r.storage_id)


def latest_run_end(instance: dg.DagsterInstance) -> int:
    return max(
        (r.storage_id for status in RUN_ENDS for r in instance.fetch_run_status_changes(status, limit=1).records),
        default=0,
    )


@dg.sensor(
    name="alert_on_error_checks",
    description=f"Posts the failed ERROR checks of each finished run to {WEBHOOK_ENV}.",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def alert_on_error_checks(context: dg.SensorEvaluationContext):
    if context.cursor is None:
        # First tick: start from now, as run status sensors do; past runs are not news.
        context.update_cursor(str(latest_run_end(context.instance)))
        return dg.SkipReason("started: watching the runs that finish from now on")
    records = finished_runs(context.instance, int(context.cursor))
    for record in records:
        run = context.instance.get_run_by_id(record.run_id)
        text = run and failed_error_checks_text(context.instance, run)
        if text:
            send(text, context.log)
    if records:
        context.update_cursor(str(records[-1].storage_id))
    return dg.SkipReason(f"{len(records)} finished run(s) read")


SENSORS = [alert_on_run_failure, alert_on_error_checks]
