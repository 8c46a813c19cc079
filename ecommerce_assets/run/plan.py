"""The plan of a run and the scheduler that runs it: plain Python, no Dagster, no DuckDB.

A node is a raw table or a model: anything with a `name`, and optionally `deps` (upstream node
names), `checks` (declarations with `name` and `blocking`) and `check_deps` (check name -> the
other nodes a check reads).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from threading import Event
from typing import Any, Literal


@dataclass(eq=False)
class Task:
    """A node's build, or its selected checks; `after`: the tasks that must finish first."""

    kind: Literal["build", "check"]
    node: Any
    checks: list = field(default_factory=list)
    after: set[Task] = field(default_factory=set)


def plan(nodes: Sequence, selected_checks: Iterable[tuple[str, str]]) -> list[Task]:
    """Every node's build and the selected checks of each, in the order a one-worker run takes.

    A build waits for its parents' builds and for their blocking checks, so a failed key check
    stops its children before they read bad rows; checks wait for the build of their model and of
    every table they compare with.
    """
    selected_checks = set(selected_checks)
    builds = {n.name: Task("build", n) for n in nodes}
    checks: dict[str, Task] = {}
    for n in nodes:
        decls = [c for c in n.checks if (n.name, c.name) in selected_checks]
        if decls:
            checks[n.name] = Task("check", n, decls)
    for n in nodes:
        parents = [d for d in n.deps if d in builds]
        builds[n.name].after = {builds[d] for d in parents}
        builds[n.name].after |= {
            checks[d] for d in parents if d in checks and any(c.blocking for c in checks[d].checks)
        }
        if n.name in checks:
            compared = {t for c in checks[n.name].checks for t in n.check_deps.get(c.name, ()) if t in builds}
            checks[n.name].after = {builds[n.name], *(builds[t] for t in compared)}
    # Each node's checks right after its build: with one worker this is the order a back-to-back
    # run takes, and with more the earliest ready task goes first.
    return [t for n in nodes for t in (builds[n.name], checks.get(n.name)) if t]


def run_tasks(
    tasks: Sequence[Task],
    concurrency: int,
    start: Callable[[Task], Callable[[], object] | None],
    finish: Callable[[Task, Future], Iterator],
    stop: Event,
    thread_name: str = "warehouse-sql",
) -> Iterator:
    """Runs up to `concurrency` tasks at a time on worker threads, each once all of its `after` are done.

    Of the ready tasks, the one with the longest chain of tasks waiting on it starts first (the
    critical path), then the earliest in `tasks`.

    `start(task)` returns the work to run on a worker, or None when there is nothing to run (the
    task then counts as done at once). `finish(task, future)` runs on this thread once the work
    ends; whatever it yields is yielded here. Once `stop` is set no task starts; the running ones
    are waited for.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency={concurrency}: use 1 or more")
    rank = {task: (-height, i) for i, (task, height) in enumerate(_heights(tasks).items())}
    graph = TopologicalSorter({task: task.after for task in tasks})
    graph.prepare()  # raises graphlib.CycleError naming the cycle
    ready: list[Task] = []
    running: dict[Future, Task] = {}
    with ThreadPoolExecutor(concurrency, thread_name_prefix=thread_name) as pool:
        while graph.is_active() and not stop.is_set():
            ready = sorted([*ready, *graph.get_ready()], key=rank.__getitem__)
            if ready and len(running) < concurrency:
                task = ready.pop(0)
                work = start(task)
                if work is None:
                    graph.done(task)
                else:
                    running[pool.submit(work)] = task
                continue
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                task = running.pop(future)
                yield from finish(task, future)
                graph.done(task)


def _heights(tasks: Sequence[Task]) -> dict[Task, int]:
    """Each task's longest chain of dependents, itself included."""
    waiting: dict[Task, list[Task]] = {t: [] for t in tasks}
    for task in tasks:
        for before in task.after:
            waiting[before].append(task)
    heights: dict[Task, int] = {}
    for task in reversed(list(TopologicalSorter({t: t.after for t in tasks}).static_order())):
        heights[task] = 1 + max((heights[w] for w in waiting[task]), default=0)
    return {task: heights[task] for task in tasks}
