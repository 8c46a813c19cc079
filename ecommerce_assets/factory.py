"""The one place that builds assets: raw tables and SQL models -> one subsettable multi-asset.

Every model is its own asset (own key, group, tags, materializations and checks in the UI,
selectable alone), but a run executes all selected ones in ONE step on ONE DuckDB connection:
each extra step costs a process, event-log writes and a reconnect, which on small data is most
of the run. Inside the step this module does what Dagster would do across steps: build in
dependency order, and skip everything downstream of a model that failed or whose blocking check
failed, so the tables from the previous run stay as they were.
"""

import datetime as dt
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb
from pydantic import Field

from ecommerce_assets.checks import CheckDecl, CheckOutcome, evaluate, screen
from ecommerce_assets.markdown import markdown_table
from ecommerce_assets.models import DEFAULT_ANALYSIS_DATE_SQL, Model, ModelError, load_macros
from ecommerce_assets.raw import RAW_TABLES, RawLoadError, RawTable, create_load_log, load
from ecommerce_assets.resources import DuckDBWarehouse, Settings

# Rows shown in the UI: a sample of a model, the whole answer of an analysis (up to 50).
PREVIEW_ROWS = {"analyses": 50}
DEFAULT_PREVIEW_ROWS = 5
KINDS = {"duckdb", "sql"}

# Hand-written work that follows a model's SQL (charts, exports): returns extra metadata. It may
# carry a `warm_up` attribute: a function started on a spare thread when a run that selects the
# model begins (to import a heavy library while DuckDB works).
AfterBuild = Callable[[duckdb.DuckDBPyConnection, Model, "RunContext"], Mapping[str, object]]


class PipelineConfig(dg.Config):
    """Run config of the warehouse step (Launchpad: ops -> warehouse -> config)."""

    analysis_date: str | None = Field(
        default=None,
        description="YYYY-MM-DD date recency, account age and trend windows are measured to. "
        "Default: the latest completed order date in the data.",
    )
    full_refresh: bool = Field(
        default=False,
        description="Reload every raw file and rebuild incremental models from scratch (dbt's --full-refresh).",
    )
    data_dir: str | None = Field(
        default=None,
        description="Directory with raw_customers, raw_orders, raw_order_items, raw_products "
        "(.csv or .parquet). Default: ECOMMERCE_DATA_DIR, else data/.",
    )
    concurrency: int | None = Field(
        default=None,
        description="Statements run at a time (dbt's --threads); 1 runs them back to back. "
        "Default: ECOMMERCE_CONCURRENCY, else 2 (dev) or 4 (prod).",
    )


class RunContext:
    """What one run shares across models: the run's variables, its cursors and the output dir.

    Each worker thread gets its own cursor of the run's connection (DuckDB runs statements of
    different cursors at the same time); DuckDB variables belong to a cursor, so each gets them.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, settings: Settings, config: PipelineConfig, log, cursors: list):
        self.con = con
        self.settings = settings
        self.config = config
        self.log = log
        self.cursors = cursors  # every open cursor, for interrupting a terminated run
        self.started_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        self.analysis_date: dt.date | None = None
        self.concurrency = settings.concurrency if config.concurrency is None else config.concurrency
        if self.concurrency < 1:
            raise dg.Failure(f"run config concurrency={config.concurrency}: use 1 or more")
        self._lock = threading.Lock()
        self._local = threading.local()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor, with the run's variables set."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._local.cursor = self.con.cursor()
            self.cursors.append(cur)
            cur.execute("set variable run_started_at = ?::timestamp", [self.started_at])
        if self.analysis_date is not None:  # known once a model that needs it was built
            cur.execute("set variable analysis_date = ?::date", [self.analysis_date])
        return cur

    def close_cursors(self) -> None:
        for cur in self.cursors:
            if cur is not self.con:
                cur.close()

    def ensure_analysis_date(self, cur: duckdb.DuckDBPyConnection) -> dt.date:
        with self._lock:
            if self.analysis_date is None:
                if self.config.analysis_date:
                    try:
                        self.analysis_date = dt.date.fromisoformat(self.config.analysis_date)
                    except ValueError:
                        raise dg.Failure(
                            f"run config analysis_date={self.config.analysis_date!r} is not a YYYY-MM-DD date"
                        ) from None
                else:
                    self.analysis_date = cur.execute(DEFAULT_ANALYSIS_DATE_SQL).fetchone()[0]
                self.log.info(f"analysis date: {self.analysis_date}")
        cur.execute("set variable analysis_date = ?::date", [self.analysis_date])
        return self.analysis_date


def build_warehouse(
    models: Sequence[Model],
    settings: Settings,
    raw_tables: Sequence[RawTable] = RAW_TABLES,
    after_build: Mapping[str, AfterBuild] | None = None,
    name: str = "warehouse",
) -> dg.AssetsDefinition:
    """`models` must be resolved and in dependency order (`models.resolve_deps`)."""
    after_build = dict(after_build or {})

    specs = [_raw_spec(r) for r in raw_tables] + [_model_spec(m) for m in models]
    check_specs = [
        dg.AssetCheckSpec(
            c.name,
            asset=m.name,
            description=f"{c.description} [{c.severity.upper()}{', blocking' if c.blocking else ''}]",
            blocking=c.blocking,
            additional_deps=m.check_deps[c.name],
            metadata={"severity": c.severity, "kind": c.kind, "query": dg.MetadataValue.md(_sql_block(m.check_sql[c.name]))},
        )
        for m in models
        for c in m.checks
    ]

    @dg.multi_asset(
        name=name,
        specs=specs,
        check_specs=check_specs,
        can_subset=True,
        pool="duckdb",
        description="Loads the raw exports and builds every selected SQL model and check in one DuckDB connection.",
    )
    def warehouse(context: dg.AssetExecutionContext, config: PipelineConfig, duckdb: DuckDBWarehouse):
        selected = {k.to_user_string() for k in context.selected_asset_keys}
        selected_checks = {(k.asset_key.to_user_string(), k.name) for k in context.selected_asset_check_keys}
        data_dir = Path(config.data_dir or settings.data_dir)
        for warm_up in {getattr(after_build.get(name), "warm_up", None) for name in selected} - {None}:
            threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
        with duckdb.get_connection() as con:
            cursors = [con]

            def work(log, stop: threading.Event) -> Iterator:
                run = RunContext(con, settings, config, log, cursors)
                _prepare(con, models)
                try:
                    yield from _execute(log, stop, run, raw_tables, models, selected, selected_checks, data_dir, after_build)
                finally:
                    run.close_cursors()

            yield from _overlapped(work, context.log, lambda: [c.interrupt() for c in list(cursors)])

    return warehouse


def _overlapped(work: Callable[[object, threading.Event], Iterator], log, interrupt: Callable[[], None]) -> Iterator:
    """Runs `work` (every DuckDB statement of the step) on a worker thread; yields its events here.

    Recording an event in Dagster's event log costs ~10 ms of this thread and a run has a few
    hundred. DuckDB releases the GIL while a statement runs, so the worker builds the next model
    while this thread records the previous one's materialization and checks. Log lines travel
    through the same queue, so the UI shows everything in the order it happened and only this
    thread talks to Dagster.
    """
    items: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()

    def produce() -> None:
        try:
            for event in work(_ForwardedLog(items.put), stop):
                items.put(("event", event))
            items.put(("done", None))
        except BaseException as e:  # re-raised on the step's thread, with its traceback
            items.put(("raise", e))

    worker = threading.Thread(target=produce, name="warehouse-sql", daemon=True)
    worker.start()
    finished = False
    try:
        while True:
            kind, *payload = items.get()
            if kind == "event":
                yield payload[0]
            elif kind == "log":
                getattr(log, payload[0])(payload[1])
            elif kind == "raise":
                finished = True
                raise payload[0]
            else:
                finished = True
                return
    finally:
        if not finished:  # the run was terminated: stop the statement in flight and build nothing more
            stop.set()
            interrupt()
        worker.join()


class _ForwardedLog:
    """The worker thread's `context.log`: its lines are logged by the step's thread, in order."""

    def __init__(self, put: Callable[[tuple], None]):
        self._put = put

    def info(self, message: str) -> None:
        self._put(("log", "info", message))

    def warning(self, message: str) -> None:
        self._put(("log", "warning", message))

    def error(self, message: str) -> None:
        self._put(("log", "error", message))


@dataclass(eq=False)
class _Task:
    """A node's build, or its selected checks; `after`: the tasks that must finish first."""

    kind: str  # "build" or "check"
    node: RawTable | Model
    checks: list[CheckDecl] = field(default_factory=list)
    after: set = field(default_factory=set)


def _plan(nodes: Sequence[RawTable | Model], selected_checks: set) -> list[_Task]:
    """A build waits for its parents' builds and for their blocking checks; checks wait for the
    build of their model and of every table they compare with."""
    builds = {n.name: _Task("build", n) for n in nodes}
    checks = {}
    for n in nodes:
        decls = [c for c in getattr(n, "checks", ()) if (n.name, c.name) in selected_checks]
        if decls:
            checks[n.name] = _Task("check", n, decls)
    for n in nodes:
        deps = [d for d in getattr(n, "deps", ()) if d in builds]
        builds[n.name].after = {builds[d] for d in deps}
        builds[n.name].after |= {checks[d] for d in deps if d in checks and any(c.blocking for c in checks[d].checks)}
        if n.name in checks:
            compared = {t for c in checks[n.name].checks for t in n.check_deps[c.name] if t in builds}
            checks[n.name].after = {builds[n.name], *(builds[t] for t in compared)}
    # Dependency order, each node's checks right after its build: with one worker this is the
    # order a back-to-back run takes, and with more the earliest ready task goes first.
    return [t for n in nodes for t in (builds[n.name], checks.get(n.name)) if t]


def _execute(log, stop, run, raw_tables, models, selected, selected_checks, data_dir, after_build) -> Iterator:
    """Runs the plan on `run.concurrency` worker threads; yields events as tasks finish.

    DuckDB's threads rarely keep every core busy through a statement (writes, small aggregates,
    the checks' scans), so two statements at a time finish sooner than back to back. All the
    bookkeeping happens on this thread; the workers only run SQL (and the charts and exports).
    """
    held_back: set[str] = set()  # not built, or failed a blocking check: downstream must wait
    not_built: set[str] = set()  # selected but skipped or failed: its checks would read a stale table
    failures: list[str] = []
    built: list[str] = []  # one log line at the end: every event costs a write to the event log
    existing = {r[0] for r in run.con.execute("select table_name from information_schema.tables").fetchall()}

    def start(task: _Task) -> Callable[[], object] | None:
        """The work to submit, or None when there is nothing to run."""
        node = task.node
        if task.kind == "check":
            if node.name in not_built:
                return None
            runnable = []
            for check in task.checks:
                unavailable = [t for t in node.check_deps[check.name] if t in not_built or t not in existing]
                if unavailable:
                    # A subset run on a fresh database: the table the check compares with is not there yet.
                    log.warning(f"{node.name}: check {check.name} not run, it reads {unavailable}, not built")
                else:
                    runnable.append(check)
            return (lambda: _run_checks(run, node, runnable)) if runnable else None
        if node.name not in selected:
            return None
        waiting_on = [d for d in getattr(node, "deps", ()) if d in held_back]
        if waiting_on:
            log.warning(f"{node.name}: skipped, upstream {waiting_on} failed or failed a blocking check")
            held_back.add(node.name)
            not_built.add(node.name)
            return None
        return lambda: _build(run, node, after_build.get(node.name), data_dir, exists=node.name in existing)

    def finish(task: _Task, future: Future) -> Iterator:
        node = task.node
        if task.kind == "check":
            for check, result in future.result():
                if not result.passed and check.blocking:
                    log.error(f"{node.name}: blocking check {check.name} failed; downstream models are skipped")
                    held_back.add(node.name)
                yield result
            return
        try:
            metadata = future.result()
        except (duckdb.Error, RawLoadError, ModelError) as e:
            log.error(f"{node.name}: {e}")
            failures.append(f"{node.name}: {e}")
            held_back.add(node.name)
            not_built.add(node.name)
            return
        built.append(f"{node.table}: {metadata['dagster/row_count']:,} rows in {metadata['duration_s']} s")
        existing.add(node.name)
        yield dg.MaterializeResult(asset_key=node.name, metadata=metadata)

    pending = _plan([*raw_tables, *models], selected_checks)
    done: set[_Task] = set()
    running: dict[Future, _Task] = {}

    def ready() -> list[_Task]:
        return [] if stop.is_set() else [t for t in pending if t.after <= done]

    with ThreadPoolExecutor(run.concurrency, thread_name_prefix="warehouse-sql") as pool:
        while pending or running:
            waiting = ready()
            while waiting and len(running) < run.concurrency:
                task = waiting.pop(0)
                pending.remove(task)
                work = start(task)
                if work is None:  # nothing to run: its dependents may be ready now
                    done.add(task)
                    waiting = ready()
                else:
                    running[pool.submit(work)] = task
            if not running:
                if stop.is_set():
                    return
                if pending:  # nothing runs and nothing can start: the plan has a cycle
                    raise RuntimeError(f"no task can start: {[t.node.name for t in pending]}")
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                task = running.pop(future)
                yield from finish(task, future)
                done.add(task)
    if built:
        log.info(f"built, up to {run.concurrency} statement(s) at a time:\n" + "\n".join(built))
    if failures:
        raise dg.Failure(
            description=f"{len(failures)} asset(s) failed; their previous tables are unchanged:\n" + "\n".join(failures)
        )


def _build(run: RunContext, node: RawTable | Model, after: AfterBuild | None, data_dir: Path, exists: bool) -> dict:
    """On a worker thread: the node's table, then its metadata."""
    started = time.perf_counter()
    cur = run.cursor()
    if isinstance(node, RawTable):
        loaded = load(cur, node, data_dir, run.config.full_refresh)
        metadata = {"load": loaded.mode, "files_read": [str(p) for p in loaded.files]}
    else:
        metadata = _build_model(run, cur, node, after, exists)
    metadata |= table_metadata(cur, node)
    metadata["duration_s"] = round(time.perf_counter() - started, 3)
    return metadata


def _run_checks(run: RunContext, model: Model, checks: list[CheckDecl]) -> list[tuple[CheckDecl, dg.AssetCheckResult]]:
    """On a worker thread: one statement counts every check's failures, then the failing rows of those that fail."""
    cur = run.cursor()
    screened = _screen(cur, model, checks)
    return [(c, _check_result(cur, model, c, model.check_sql[c.name], screened.get(c.name))) for c in checks]


def _prepare(con: duckdb.DuckDBPyConnection, models: Sequence[Model]) -> None:
    for schema in sorted({"raw", *(m.layer for m in models)}):
        con.execute(f"create schema if not exists {schema}")
    # Before the workers start: two raw loads creating it at once would conflict.
    create_load_log(con)
    for macro in load_macros():
        con.execute(macro)


def _build_model(run: RunContext, cur, model: Model, after: AfterBuild | None, exists: bool) -> dict:
    metadata: dict[str, object] = {"sql": dg.MetadataValue.md(_sql_block(model.create_statement()))}
    if model.uses_analysis_date:
        metadata["analysis_date"] = str(run.ensure_analysis_date(cur))
    if model.materialized == "incremental" and not run.config.full_refresh and exists:
        metadata |= _merge(cur, model)
    else:
        cur.execute(model.create_statement())
    if after:
        metadata |= after(cur, model, run)
    return metadata


def _merge(con: duckdb.DuckDBPyConnection, model: Model) -> dict:
    """One transaction: a failed merge leaves the table as it was."""
    statements = model.merge_statements()
    con.execute("begin transaction")
    try:
        for statement in statements[:-1]:
            con.execute(statement)
        inserted, updated, deleted = con.execute(statements[-1]).fetchone()
        con.execute("commit")
    except duckdb.Error:
        con.execute("rollback")
        raise
    finally:
        con.execute("drop table if exists temp.incoming; drop table if exists temp.changes")
    return {
        "sql": dg.MetadataValue.md(_sql_block(";\n\n".join(statements))),
        "rows_inserted": inserted,
        "rows_updated": updated,
        "rows_deleted": deleted,
    }


def table_metadata(con: duckdb.DuckDBPyConnection, node: RawTable | Model) -> dict:
    """Row count, column schema (types and descriptions) and a preview of the rows."""
    descriptions = node.columns if isinstance(node, Model) else {}
    limit = PREVIEW_ROWS.get(node.layer, DEFAULT_PREVIEW_ROWS) if isinstance(node, Model) else DEFAULT_PREVIEW_ROWS
    columns = con.execute(f"describe {node.table}").fetchall()
    rows = con.execute(f"select count(*) from {node.table}").fetchone()[0]
    preview = con.execute(f"select * from {node.table} limit {limit}")
    names = [d[0] for d in preview.description]
    return {
        "dagster/row_count": rows,
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name=c[0], type=c[1], description=descriptions.get(c[0])) for c in columns]
        ),
        "preview": dg.MetadataValue.md(markdown_table(names, preview.fetchall(), total=rows)),
    }


def _screen(con, model: Model, checks: list[CheckDecl]) -> dict[str, int]:
    try:
        return screen(con, model.table, checks, model.check_count_sql)
    except duckdb.Error:
        return {}  # each check then runs its own query and reports its own error


def _check_result(con, model: Model, check: CheckDecl, sql: str, screened: int | None) -> dg.AssetCheckResult:
    severity = dg.AssetCheckSeverity.ERROR if check.severity == "error" else dg.AssetCheckSeverity.WARN
    try:
        outcome = CheckOutcome(0, [], [], sql) if screened == 0 else evaluate(con, sql)
    except duckdb.Error as e:
        return dg.AssetCheckResult(
            asset_key=model.name, check_name=check.name, passed=False, severity=severity,
            metadata={"error": str(e), "query": dg.MetadataValue.md(_sql_block(sql))},
        )
    metadata = {"failing_rows": outcome.failing, "query": dg.MetadataValue.md(_sql_block(sql))}
    if outcome.failing:
        metadata["failing_sample"] = dg.MetadataValue.md(markdown_table(outcome.columns, outcome.sample, total=outcome.failing))
    return dg.AssetCheckResult(
        asset_key=model.name, check_name=check.name, passed=outcome.passed, severity=severity, metadata=metadata,
        description=None if outcome.passed else f"{outcome.failing} failing row(s): {check.description}",
    )


def _raw_spec(raw: RawTable) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=raw.name,
        group_name="raw",
        description=raw.description,
        kinds={"duckdb"},
        skippable=True,
        metadata={
            "dagster/table_name": raw.table,
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(name=c, type=t) for c, t in raw.columns.items()]
            ),
        },
    )


def _model_spec(model: Model) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=model.name,
        deps=model.deps,
        group_name=model.layer,
        description=model.description,
        tags={tag: "" for tag in model.tags},
        kinds=KINDS,
        code_version=model.code_version,
        skippable=True,
        metadata={
            "dagster/table_name": model.table,
            "materialized": model.materialized,
            "dagster/code_references": _code_reference(model.path),
        },
    )


def _code_reference(path: Path):
    # Links the asset to its SQL file in the UI; the API is marked beta, the feature is stable.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.CodeReferencesMetadataValue(code_references=[dg.LocalFileCodeReference(file_path=str(path), line_number=1)])


def _sql_block(sql: str) -> str:
    return f"```sql\n{sql}\n```"
