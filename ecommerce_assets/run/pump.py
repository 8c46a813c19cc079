"""The step's event pump: the run's SQL on a worker thread, its events recorded on the step's thread.

Recording an event in Dagster's event log costs ~10 ms of the recording thread and a run has a few
hundred. DuckDB releases the GIL while a statement runs, so the worker builds the next model while
the step's thread records the previous one's materialization and checks. Log lines travel through
the same queue, so the UI shows everything in the order it happened and only the step's thread
talks to Dagster.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Protocol


class Log(Protocol):
    def info(self, message: str) -> None: ...
    def warning(self, message: str) -> None: ...
    def error(self, message: str) -> None: ...


Work = Callable[[Log, threading.Event], Iterator]


def pump(work: Work, log: Log, interrupt: Callable[[], None]) -> Iterator:
    """Runs `work(log, stop)` on a worker thread and yields its events here, in order.

    An exception in `work` is raised here with its traceback. Closing this generator early (what
    Dagster does when a run is terminated) sets `stop`, calls `interrupt` to end the statements in
    flight, and waits for the worker.
    """
    items: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()

    def produce() -> None:
        try:
            for event in work(ForwardedLog(items.put), stop):
                items.put(("event", event))
            items.put(("done", None))
        except BaseException as e:
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
            else:
                finished = True
                if kind == "raise":
                    raise payload[0]
                return
    finally:
        if not finished:
            stop.set()
            interrupt()
        worker.join()


class ForwardedLog:
    """The worker thread's log: its lines are logged by the step's thread, in order."""

    def __init__(self, put: Callable[[tuple], None]):
        self._put = put

    def info(self, message: str) -> None:
        self._put(("log", "info", message))

    def warning(self, message: str) -> None:
        self._put(("log", "warning", message))

    def error(self, message: str) -> None:
        self._put(("log", "error", message))
