"""One run of the warehouse: the selected loads, models and checks on DuckDB, as a stream of events.

No Dagster here: the factory turns the events into Dagster's results, and the benchmark's floor
runs the same engine with nothing around it. Inside a run the engine does what Dagster does
across steps: build in dependency order, and skip everything downstream of a model that failed
or whose blocking check failed, so the tables from the previous run stay as they were.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial

import duckdb

from ecommerce_assets.errors import ModelError, RawLoadError, RunFailed
from ecommerce_assets.project.checks import CheckDecl
from ecommerce_assets.project.models import Model
from ecommerce_assets.project.node import Node
from ecommerce_assets.project.sources import RawTable
from ecommerce_assets.run import logs
from ecommerce_assets.run.audit import CheckOutcome, failing_rows, screen
from ecommerce_assets.run.build import TableStats, build_model, build_raw, located, table_stats
from ecommerce_assets.run.context import Run
from ecommerce_assets.run.keys import VERIFY_KEYS
from ecommerce_assets.run.logs import create_load_log, create_publish_log
from ecommerce_assets.run.plan import Task, plan, run_tasks
from ecommerce_assets.run.publish import clean_up, publish, publishable
from ecommerce_assets.run.pump import Log
from ecommerce_assets.run.serve import copy_statement, drop_staged, files_folder, table_file, write_serving_copy

# Not in the readers' copy: the raw exports (readers have the files), staging's views of them
# (copying them would copy every raw row on each run), and the intermediate building blocks, which
# a daily run rewrites in part and readers have no use for (marts, ml and analyses are theirs).
SERVING_SKIPS = ("raw", "staging", "intermediate")

BUILT_IN_FULL = "not run: this run built the table from scratch with the SQL the check would rebuild it with"

# Hand-written work that follows a model's SQL (the analyses' charts): returns extra metadata. It
# may carry a `warm_up` attribute: a function started on a spare thread when a run that selects
# the model begins (to import a heavy library while DuckDB works).
AfterBuild = Callable[[duckdb.DuckDBPyConnection, Model, Run], Mapping[str, object]]


@dataclass(frozen=True)
class Built:
    node: Node
    metadata: dict[str, object]  # plain values (statement, load mode, rows merged...) and the hooks' own
    stats: TableStats
    duration_s: float


@dataclass(frozen=True)
class Checked:
    node: Model
    check: CheckDecl
    outcome: CheckOutcome | None  # None when the check's query failed
    error: str | None = None
    # Not run: the run that gave this outcome, on the same table and inputs (see `carried`).
    carried_from: str | None = None


@dataclass(frozen=True)
class Project:
    """What a run can build: raw tables and resolved models in dependency order, the macros to
    create first, and the hand-written work after some models (by model name)."""

    nodes: Sequence[Node]
    macros: Sequence[str] = ()
    after_build: Mapping[str, AfterBuild] = field(default_factory=dict)


@dataclass(frozen=True)
class Selection:
    """The node names to build and the (node, check) pairs to run."""

    assets: frozenset[str]
    checks: frozenset[tuple[str, str]] = field(default_factory=frozenset)

    @classmethod
    def everything(cls, nodes: Sequence[Node]) -> Selection:
        return cls(
            frozenset(n.name for n in nodes),
            frozenset((n.name, c.name) for n in nodes for c in n.checks),
        )


def prepare(run: Run, project: Project) -> None:
    """Drops what a run that died left, then creates the schemas, the logs and the macros before the
    workers start (two workers creating the same object at once would conflict)."""
    con = run.con
    dropped = clean_up(con, run.output_dir)
    if run.options.serving_path:
        dropped += drop_staged(files_folder(run.options.serving_path))
    if dropped:
        run.log.warning(f"dropped what an earlier run left unpublished: {', '.join(dropped)}")
    for schema in sorted({"raw", *(n.layer for n in project.nodes)}):
        con.execute(f"create schema if not exists {schema}")
    create_load_log(con)
    create_publish_log(con)
    for macro in project.macros:
        con.execute(macro)


@dataclass
class RunState:
    """What one run has learnt about its nodes so far, passed to each task's start and finish (both
    on the run's own thread; the worker threads only run SQL)."""

    run: Run
    project: Project
    selection: Selection
    log: Log
    # Tables in the warehouse: built before, or by this run.
    existing: set[str]
    # Not built, or failed a blocking check: downstream must wait.
    held_back: set[str] = field(default_factory=set)
    # Failed a blocking check: not published.
    blocked: set[str] = field(default_factory=set)
    # Selected but skipped or failed: its checks would read a stale table.
    not_built: set[str] = field(default_factory=set)
    # Built with new content this run (not an unchanged load or kept model).
    rebuilt: set[str] = field(default_factory=set)
    # Unchanged since its last publish: not rebuilt, its checks not rerun.
    kept: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    # Table -> [rows, build s, checks s]: one log line at the end.
    timings: dict[str, list] = field(default_factory=dict)


def execute(
    run: Run, project: Project, selection: Selection, log: Log, stop: threading.Event
) -> Iterator[Built | Checked]:
    """Runs the plan on `run.options.concurrency` worker threads; yields events as tasks finish.

    DuckDB's threads rarely keep every core busy through a statement (writes, small aggregates, the
    checks' scans), so two statements at a time finish sooner than back to back. All bookkeeping
    happens on the calling thread; the workers only run SQL (and the charts and exports). Raises
    RunFailed at the end when a selected node failed.
    """
    run.log = log
    run.versions = fingerprints(project.nodes)
    run.maintained = tuple(n.table for n in project.nodes if n.maintained)
    run.schemas = {n.name: n.layer for n in project.nodes}
    prepare(run, project)
    after_build = project.after_build
    for warm_up in {getattr(after_build.get(n), "warm_up", None) for n in selection.assets} - {None}:
        threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    existing = {r[0] for r in run.con.execute("select table_name from information_schema.tables").fetchall()}
    state = RunState(run, project, selection, log, existing)

    concurrency = run.options.concurrency
    # Held until the publish: the materializations describe what was published.
    started = time.perf_counter()
    events = list(
        run_tasks(
            plan(project.nodes, selection.checks),
            concurrency,
            partial(start_task, state),
            partial(finish_task, state),
            stop,
        )
    )
    phases = {"loads, models and checks": time.perf_counter() - started}
    if state.timings:
        log.info(f"timings, up to {concurrency} statement(s) at a time:\n" + timings_table(state.timings))
    if stop.is_set():
        clean_up(run.con, run.output_dir)
        log.warning("run stopped: nothing published, the warehouse is as before the run")
        return
    started = time.perf_counter()
    published = publish_run(run, project, [e for e in events if isinstance(e, Built)], state.blocked)
    phases["publish"] = time.perf_counter() - started
    try:
        # Outcomes on what is published now: a published build's, or a table this run did not build.
        built_now = {e.node.name for e in events if isinstance(e, Built)}
        record_checks(
            run,
            [
                e
                for e in events
                if isinstance(e, Checked)
                and not e.carried_from
                and (e.node.name in published or e.node.name not in built_now)
            ],
        )
        for event in events:
            if isinstance(event, Checked) or event.node.name in published:
                yield event
        # After the events are handed over: Dagster writes them to its event log on the step's
        # thread (~10 ms each, a few hundred) while DuckDB writes the copy here, instead of one
        # after the other.
        started = time.perf_counter()
        write_readers_copy(run)
        phases["readers' copy"] = time.perf_counter() - started
        log.info(phases_line(phases, state.timings))
        run.phases = run_phases(phases, state.timings)
    finally:
        clean_up(run.con, run.output_dir)  # what was built and not published, and the run's deltas
    if state.failures:
        raise RunFailed(state.failures)


def start_task(state: RunState, task: Task) -> Callable[[], object] | None:
    """The work of `task`, to run on a worker thread, or None when it is skipped."""
    run, selection, log = state.run, state.selection, state.log
    node = task.node
    if task.kind == "check":
        if node.name in state.not_built:
            return None
        runnable = []
        for check in task.checks:
            unavailable = [t for t in node.check_deps[check.name] if t in state.not_built or t not in state.existing]
            if unavailable:  # a subset run on a fresh database: the compared table is not there yet
                log.warning(f"{node.name}: check {check.name} not run, it reads {unavailable}, not built")
            else:
                runnable.append(check)
        checks = carried_checks if node.name in state.kept else run_checks
        return (lambda: _timed(checks, run, node, runnable)) if runnable else None
    if node.name not in selection.assets:
        return None
    waiting_on = [d for d in node.deps if d in state.held_back]
    if waiting_on:
        log.warning(f"{node.name}: skipped, upstream {waiting_on} failed or failed a blocking check")
        state.held_back.add(node.name)
        state.not_built.add(node.name)
        return None
    since = unchanged_since(run, node, state.rebuilt, exists=node.name in state.existing)
    if since:
        return lambda: keep(run, node, since)
    return lambda: build(run, node, state.project.after_build.get(node.name), exists=node.name in state.existing)


def finish_task(state: RunState, task: Task, future: Future) -> Iterator[Built | Checked]:
    """The events of a finished task; what it tells the tasks after it goes into `state`."""
    log = state.log
    node = task.node
    if task.kind == "check":
        checked_all, seconds = future.result()
        state.timings.setdefault(node.table, [None, None, 0.0])[2] = seconds
        for checked in checked_all:
            if checked.check.blocking and not (checked.outcome and checked.outcome.passed):
                log.error(f"{node.name}: blocking check {checked.check.name} failed; downstream models are skipped")
                state.held_back.add(node.name)
                state.blocked.add(node.name)
            yield checked
        return
    try:
        result: Built = future.result()
    except (duckdb.Error, RawLoadError, ModelError) as e:
        log.error(f"{node.name}: {e}")
        state.failures.append(f"{node.name}: {e}")
        state.held_back.add(node.name)
        state.not_built.add(node.name)
        return
    state.timings.setdefault(node.table, [None, None, None])[:2] = [result.stats.rows, result.duration_s]
    state.existing.add(node.name)
    if "unchanged_since" in result.metadata:
        state.kept.add(node.name)
        log.info(
            f"{node.name}: unchanged since run {result.metadata['unchanged_since']} (same code, inputs and"
            " dates): kept as published, its checks' last outcomes reported again"
        )
    elif result.metadata.get("load") == "unchanged":
        log.info(f"{node.name}: no new or changed file, {result.stats.rows:,} rows as published")
    else:
        state.rebuilt.add(node.name)
        log.info(f"{node.name}: built, {result.stats.rows:,} rows in {result.duration_s:.2f} s (published at the end)")
    yield result


def fingerprints(nodes: Sequence[Node]) -> dict[str, str]:
    """Per node (in dependency order): a hash of its code and of its upstream nodes' fingerprints.
    A delete+insert model is maintained only while its fingerprint is the one it was published
    with: any change to its code or upstream of it rebuilds it from scratch."""
    versions: dict[str, str] = {}
    for node in nodes:
        versions[node.name] = fingerprint(node, versions)
    return versions


def fingerprint(node: Node, upstream: Mapping[str, str]) -> str:
    """`node`'s fingerprint given its upstream nodes' (`upstream`: node name -> fingerprint)."""
    deps = "".join(upstream.get(d, "") for d in sorted(node.deps))
    return hashlib.sha256(f"{node.code_version}{deps}".encode()).hexdigest()[:16]


def publish_run(run: Run, project: Project, built: list[Built], blocked: set[str]) -> set[str]:
    """Publishes what may be (see publish.publishable) in one transaction; returns the node names
    the run's events describe as published."""
    staged = set(run.publication.relations)
    deps = {n.name: n.deps for n in project.nodes}
    views = {n.name for n in project.nodes if n.materialized == "view"}
    names = publishable(staged, blocked, deps, views)
    held = sorted(staged - names)
    if held:
        run.log.warning(f"built but not published (a blocking check failed on them or upstream): {held}")
    order = [b.node.name for b in built if b.node.name in names]
    started = time.perf_counter()
    try:
        publish(run.cursor(), run.publication, order, run.run_id, {b.node.name: b.stats.rows for b in built})
    except BaseException:
        clean_up(run.con, run.output_dir)
        raise
    run.log.info(f"published {len(order)} relation(s) in one transaction in {time.perf_counter() - started:.2f} s")
    return {b.node.name for b in built if b.node.name in names or b.node.name not in staged}


def write_readers_copy(run: Run) -> None:
    """The readers' copy of what is published (serve.py). The warehouse is published whatever
    happens here: a failure is logged, and readers keep the previous copy."""
    if not run.options.serving_path:
        return
    started = time.perf_counter()
    try:
        copy = write_serving_copy(run.con, run.options.serving_path, SERVING_SKIPS, run.run_id)
    except (duckdb.Error, OSError) as e:
        run.log.error(f"readers' copy {run.options.serving_path}: not written, readers keep the previous one: {e}")
        return
    run.log.info(
        f"readers' copy {run.options.serving_path} in {time.perf_counter() - started:.2f} s: "
        f"{len(copy.reused) + len(copy.written)} table(s) as Parquet files ({len(copy.written)} written after the "
        f"publish), {len(copy.views)} view(s), {len(copy.dropped)} dropped, {copy.files_deleted} old file(s) deleted"
    )


PHASES_PREFIX = "run phases"


def statement_seconds(timings: Mapping[str, Sequence]) -> dict[str, float]:
    """The statement seconds of the loads, the models and the checks (they overlap in wall time)."""
    return {
        "loads": sum(b or 0 for t, (_, b, _) in timings.items() if t.startswith("raw.")),
        "models": sum(b or 0 for t, (_, b, _) in timings.items() if not t.startswith("raw.")),
        "checks": sum(c or 0 for _, _, c in timings.values()),
    }


def run_phases(phases: Mapping[str, float], timings: Mapping[str, Sequence]) -> dict[str, float]:
    """The engine's phases for the run's summary: loads, models and checks by statement seconds
    (up to `concurrency` at a time), then their wall time together, publish, readers' copy."""
    return {**statement_seconds(timings), **phases}


def phases_line(phases: Mapping[str, float], timings: Mapping[str, Sequence]) -> str:
    """The run's phases in wall seconds, and the statement seconds of the first one by kind. The
    benchmarks read this line (PHASES_PREFIX) to say where a run's time goes."""
    statement = statement_seconds(timings)
    return (
        f"{PHASES_PREFIX}, wall s: "
        + ", ".join(f"{name} {seconds:.2f}" for name, seconds in phases.items())
        + "; statement s: "
        + ", ".join(f"{name} {seconds:.2f}" for name, seconds in statement.items())
    )


def timings_table(timings: Mapping[str, Sequence]) -> str:
    """table, rows, build and checks seconds, aligned, in the order the builds finished, with totals."""

    def cell(value, digits: int = 2) -> str:
        return "-" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:.{digits}f}"

    rows = [(t, cell(r), cell(b), cell(c)) for t, (r, b, c) in timings.items()]
    total = [sum(v[i] or 0 for v in timings.values()) for i in (1, 2)]
    rows.append(("total", "", cell(total[0]), cell(total[1])))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'table':<{width}}  {'rows':>12}  {'build s':>8}  {'checks s':>8}"]
    lines += [f"{t:<{width}}  {r:>12}  {b:>8}  {c:>8}" for t, r, b, c in rows]
    return "\n".join(lines)


def _timed(work: Callable, *args) -> tuple[object, float]:
    started = time.perf_counter()
    return work(*args), round(time.perf_counter() - started, 3)


def unchanged_since(run: Run, node: Node, rebuilt: set[str], exists: bool) -> str | None:
    """The run whose published table `node` still is (see Run.published_as), or None to build it.
    Raw loads decide for themselves (files already loaded are not read again)."""
    if isinstance(node, RawTable) or not exists or run.options.full_refresh:
        return None
    upstream = [*node.deps, *(t for ts in node.check_deps.values() for t in ts)]
    if any(name in rebuilt for name in upstream):
        return None
    cur = run.cursor()
    if node.uses_analysis_date:
        run.ensure_analysis_date(cur)
    tables = {n: f"{schema}.{n}" for n, schema in run.schemas.items()}
    return run.published_as(cur, node, [tables[n] for n in upstream if n in tables])


def keep(run: Run, node: Model, since: str) -> Built:
    """On a worker thread: what the catalog shows of a published table the run leaves as it is."""
    started = time.perf_counter()
    stats = table_stats(run.cursor(), node.table, node.layer)
    return Built(node, {"unchanged_since": since}, stats, round(time.perf_counter() - started, 3))


def build(run: Run, node: Node, after: AfterBuild | None, exists: bool) -> Built:
    """On a worker thread: the node's table, then what the catalog shows of it."""
    started = time.perf_counter()
    cur = run.cursor()
    if isinstance(node, RawTable):
        metadata = build_raw(run, cur, node)
    else:
        metadata = build_model(run, cur, node, exists)
        if after:
            metadata |= after(cur, node, run)
    stats = table_stats(cur, run.relation(node.table), node.layer)
    if run.options.serving_path and node.layer not in SERVING_SKIPS and node.materialized != "view":
        # The readers' file of this version, on this worker beside the other statements rather
        # than after the publish; it is renamed into place when the run publishes the node.
        path = table_file(files_folder(run.options.serving_path), node.table, run.run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        run.stage_file(
            node.name, path, lambda staged: cur.execute(copy_statement(cur, run.relation(node.table), staged))
        )
        metadata["readers_file"] = path
    return Built(node, metadata, stats, round(time.perf_counter() - started, 3))


def record_checks(run: Run, checked: list[Checked]) -> None:
    """The outcomes of the checks that ran on published tables, for a later run that keeps a table
    as it is to report them again instead of rerunning them."""
    rows = [[e.node.table, e.check.name, e.outcome.failing, e.check.blocking, run.run_id] for e in checked if e.outcome]
    logs.record_checks(run.cursor(), rows)


def carried_checks(run: Run, model: Model, checks: list[CheckDecl]) -> list[Checked]:
    """On a worker thread: a kept model's checks. A check that ran on the table as published (at
    or after its publish) reads what it read then, so its outcome stands and is reported again;
    one without such an outcome runs."""
    cur = run.cursor()
    last = logs.checks_since_publish(cur, model.table)
    carried = [
        Checked(model, c, CheckOutcome(last[c.name][0], [], [], model.check_sql[c.name]), carried_from=last[c.name][1])
        for c in checks
        if c.name in last
    ]
    return carried + run_checks(run, model, [c for c in checks if c.name not in last])


def run_checks(run: Run, model: Model, checks: list[CheckDecl]) -> list[Checked]:
    """On a worker thread: one statement counts every check's failures, then the failing rows of
    those that fail."""
    if not checks:
        return []
    cur = run.cursor()
    results = []
    pending = run.publication.relations.get(model.name)
    if pending is not None and pending.from_scratch:
        # Built from scratch by this run's own SQL: what equals_full_rebuild would rebuild and
        # compare with is this very statement, on the same inputs (a full build's table rows are
        # equal by construction), so the whole-table scan it costs proves nothing.
        for check in [c for c in checks if c.kind == "equals_full_rebuild"]:
            outcome = CheckOutcome(0, [], [], run.retarget(model.check_sql[check.name]), note=BUILT_IN_FULL)
            results.append(Checked(model, check, outcome))
        checks = [c for c in checks if c.kind != "equals_full_rebuild"]
        if not checks:
            return results
    if any(c.kind == "equals_full_rebuild" for c in checks):
        run.ensure_keys(cur, VERIFY_KEYS)
    try:
        count_sql = {name: run.retarget(sql) for name, sql in model.check_count_sql.items()}
        screened = screen(cur, run.relation(model.table), checks, count_sql)
    except duckdb.Error:
        screened = {}  # each check then runs its own query and reports its own error
    for check in checks:
        sql = run.retarget(model.check_sql[check.name])
        try:
            outcome = CheckOutcome(0, [], [], sql) if screened.get(check.name) == 0 else failing_rows(cur, sql)
        except duckdb.Error as e:
            where = located(e, sql, sql, model.path, check.sql_line) if check.sql_line else f"{model.path}: {e}"
            results.append(Checked(model, check, None, f"check {check.name}: {where}"))
            continue
        results.append(Checked(model, check, outcome))
    return results
