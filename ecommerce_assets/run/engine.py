"""One run of the warehouse: the selected loads, models and checks, as a stream of events, on any
engine behind the seam of run/adapter.py.

No Dagster here, and no engine: the factory turns the events into Dagster's results, the benchmark's
floor runs the same code with nothing around it, and DuckDB or Spark does the SQL. Inside a run the
engine does what Dagster does across steps: build in dependency order, and skip everything
downstream of a model that failed or whose blocking check failed, so the tables from the previous
run stay as they were.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial

from ecommerce_assets.errors import ModelError, RawLoadError, RunFailed
from ecommerce_assets.run.adapter import Adapter, Built, Checked, Project, Selection
from ecommerce_assets.run.plan import Task, plan, run_tasks
from ecommerce_assets.run.pump import Log


@dataclass
class RunState:
    """What one run has learnt about its nodes so far, passed to each task's start and finish (both
    on the run's own thread; the worker threads only run the adapter's statements)."""

    adapter: Adapter
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
    # Built with new content this run (not an unchanged load or kept model): staged to publish.
    rebuilt: set[str] = field(default_factory=set)
    # Unchanged since its last publish: not rebuilt, its checks not rerun.
    kept: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    # Table -> [rows, build s, checks s]: one log line at the end.
    timings: dict[str, list] = field(default_factory=dict)


def execute(
    adapter: Adapter, project: Project, selection: Selection, log: Log, stop: threading.Event
) -> Iterator[Built | Checked]:
    """Runs the plan on `adapter.concurrency` worker threads; yields events once the run published.

    An engine's threads rarely keep every core busy through a statement (writes, small aggregates,
    the checks' scans), so two statements at a time finish sooner than back to back. All
    bookkeeping happens on the calling thread; the workers only run the adapter's statements (and
    the charts and exports). Raises RunFailed at the end when a selected node failed.
    """
    existing = adapter.prepare(project, log)
    after_build = project.after_build
    for warm_up in {getattr(after_build.get(n), "warm_up", None) for n in selection.assets} - {None}:
        threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    state = RunState(adapter, project, selection, log, existing)

    concurrency = adapter.concurrency
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
    try:
        if stop.is_set():
            log.warning("run stopped: nothing published, the warehouse is as before the run")
            return
        started = time.perf_counter()
        published = publish_run(state, events)
        phases["publish"] = time.perf_counter() - started
        for event in events:
            if isinstance(event, Checked) or event.node.name in published:
                yield event
        # After the events are handed over: Dagster writes them to its event log on the step's
        # thread (~10 ms each, a few hundred) while the adapter does this work, instead of one
        # after the other.
        phases |= adapter.after_publish()
        log.info(phases_line(phases, state.timings))
        adapter.phases = run_phases(phases, state.timings)
    finally:
        adapter.discard()  # what was built and not published
    if state.failures:
        raise RunFailed(state.failures)


def publish_run(state: RunState, events: list[Built | Checked]) -> set[str]:
    """Publishes what may be (see `publishable`), with the outcomes of the checks that ran on what is
    published now; returns the node names the run's events describe as published."""
    nodes = state.project.nodes
    deps = {n.name: n.deps for n in nodes}
    views = {n.name for n in nodes if n.materialized == "view"}
    built = [e for e in events if isinstance(e, Built)]
    names = publishable(state.rebuilt, state.blocked, deps, views)
    held = sorted(state.rebuilt - names)
    if held:
        state.log.warning(f"built but not published (a blocking check failed on them or upstream): {held}")
    # A published build's checks, or those of a table this run did not build.
    checked = [
        e
        for e in events
        if isinstance(e, Checked) and not e.carried_from and (e.node.name in names or e.node.name not in state.rebuilt)
    ]
    state.adapter.publish([b for b in built if b.node.name in names], checked)
    return {b.node.name for b in built if b.node.name in names or b.node.name not in state.rebuilt}


def publishable(
    built: Iterable[str], blocked: Iterable[str], deps: Mapping[str, Sequence[str]], views: set[str]
) -> set[str]:
    """The built nodes that may be published.

    Not a node that failed a blocking check, nor anything built from one, nor what a view that is
    not published reads (the published view would show the new rows through it without their
    checks), until nothing more is held."""
    built = set(built)
    held = set(blocked)
    changed = True
    while changed:
        before = len(held)
        for node in [n for n in held if n in views]:  # a view not published exposes its upstream
            held.update(deps.get(node, ()))
        for node in built - held:  # anything built from held data is held too
            if any(d in held for d in deps.get(node, ())):
                held.add(node)
        changed = len(held) != before
    return built - held


def start_task(state: RunState, task: Task) -> Callable[[], object] | None:
    """The work of `task`, to run on a worker thread, or None when it is skipped."""
    adapter, selection, log = state.adapter, state.selection, state.log
    node = task.node
    if task.kind == "check":
        if node.name in state.not_built:
            return None
        runnable = []
        for check in task.checks:
            reads = [node.name, *node.check_deps[check.name]]
            unavailable = [t for t in reads if t in state.not_built or t not in state.existing]
            if unavailable:  # a subset run on a fresh warehouse: a table it reads is not there yet
                log.warning(f"{node.name}: check {check.name} not run, it reads {unavailable}, not built")
            else:
                runnable.append(check)
        kept = node.name in state.kept
        return (lambda: _timed(adapter.check, node, runnable, kept)) if runnable else None
    if node.name not in selection.assets:
        return None
    waiting_on = [d for d in node.deps if d in state.held_back]
    if waiting_on:
        log.warning(f"{node.name}: skipped, upstream {waiting_on} failed or failed a blocking check")
        state.held_back.add(node.name)
        state.not_built.add(node.name)
        return None
    exists = node.name in state.existing
    since = adapter.unchanged_since(node, state.rebuilt, exists)
    if since:
        return lambda: adapter.keep(node, since)
    return lambda: adapter.build(node, exists)


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
    except (RawLoadError, ModelError, *state.adapter.errors) as e:
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
