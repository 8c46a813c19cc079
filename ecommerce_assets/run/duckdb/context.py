"""What one DuckDB run shares across its models: its cursors, what it built, its analysis date."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb

from ecommerce_assets.project.models import retarget
from ecommerce_assets.project.relations import delta_name
from ecommerce_assets.project.sources import RAW_TABLES
from ecommerce_assets.run.duckdb import logs
from ecommerce_assets.run.duckdb.keys import VERIFY_KEYS, RawChange, all_keys_statement, keys_statement
from ecommerce_assets.run.duckdb.publish import Pending, Publication
from ecommerce_assets.run.options import RunOptions
from ecommerce_assets.run.outputs import staged_path

T = TypeVar("T")

# The run's analysis date unless its options set one: the latest completed order (the seed's RFM
# reference), so a rerun on the same data gives the same numbers whatever day it runs. Never
# after the day the run started (UTC): staging rejects orders dated later, and `least` keeps one
# that slipped through from moving every recency into the future.
_RUN_DATE = "cast(getvariable('run_started_at') as date)"
DEFAULT_ANALYSIS_DATE_SQL = (
    f"select least(coalesce(max(order_date) filter (where is_completed), max(order_date), {_RUN_DATE}), {_RUN_DATE})"
    " from staging.stg_orders"
)


class Run:
    """One run's state. Each worker thread gets its own cursor of the run's connection (DuckDB runs
    statements of different cursors at the same time); DuckDB variables belong to a cursor, so
    each cursor gets them."""

    def __init__(self, con: duckdb.DuckDBPyConnection, options: RunOptions, log=None, run_id: str = ""):
        self.con = con
        self.options = options
        self.log = log
        self.run_id = run_id or uuid.uuid4().hex
        # What this run built and will publish; read by the workers through `retarget`.
        self.publication = Publication()
        self._unpublished: dict[str, str] = {}  # published name -> the name this run built it under
        self.cursors: list[duckdb.DuckDBPyConnection] = []
        self.started_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        self.analysis_date = options.analysis_date
        self._date_known = False
        # Per node: its code and its upstream's (project/node.py, fingerprints), recorded when published.
        self.versions: dict[str, str] = {}
        # Where the run's time went, seconds by phase (engine.run_phases), for the run's summary.
        self.phases: dict[str, float] = {}
        # The delete+insert models' tables: the key sets reach back to the oldest of their builds.
        self.maintained: tuple[str, ...] = ()
        self.schemas: dict[str, str] = {}  # node name -> its schema
        self._keys_made: set[str] = set()
        self._keys_lock = threading.Lock()
        self._lock = threading.Lock()
        self._local = threading.local()

    @property
    def output_dir(self) -> Path:
        return self.options.output_dir

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor, with the run's variables set."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            with self._lock:
                cur = self._local.cursor = self.con.cursor()
                self.cursors.append(cur)
            cur.execute("set variable run_started_at = ?::timestamp", [self.started_at])
            cur.execute("set variable max_row_drop = ?::double", [self.options.max_row_drop])
        if self._date_known:
            cur.execute("set variable analysis_date = ?::date", [self.analysis_date])
        return cur

    def built(self, node: str, pending: Pending) -> None:
        """`node` is built: from now on the run's statements read `pending.built` for its table."""
        with self._lock:
            self.publication.relations[node] = pending
            self._unpublished = {**self._unpublished, pending.table: pending.built}

    def retarget(self, sql: str) -> str:
        """`sql` reading what this run built, where it built it."""
        return retarget(sql, self._unpublished)

    def relation(self, table: str) -> str:
        """Where this run's statements read `table`."""
        return self._unpublished.get(table, table)

    def stage_file(self, node: str, path: Path, write: Callable[[str], T]) -> T:
        """`write(temp path)`; the file replaces `path` when the run publishes `node`, never before."""
        staged = staged_path(path)
        try:
            result = write(str(staged))
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        with self._lock:
            self.publication.files.setdefault(node, []).append((staged, path))
        return result

    def interrupt(self) -> None:
        """Ends the statement running on every cursor (from any thread)."""
        for cur in [self.con, *list(self.cursors)]:
            cur.interrupt()

    def close(self) -> None:
        for cur in self.cursors:
            cur.close()

    def in_sync(self, cur: duckdb.DuckDBPyConnection, table: str, version: str) -> bool:
        """`table` was last published with this code and upstream code, and not before any raw
        table's last publish: the run's raw changes are then all it has not seen."""
        return logs.in_sync(cur, table, version)

    def model_inputs(self, model) -> str:
        """The run's variables `model` reads, as recorded in the publish log with its table."""
        parts = [f"analysis_date={self.analysis_date}"] if model.uses_analysis_date else []
        parts += [f"run_date={self.started_at.date()}"] if model.uses_run_date else []
        return ";".join(parts)

    def published_as(self, cur: duckdb.DuckDBPyConnection, model, upstream: list[str]) -> str | None:
        """The run that last published `model`, when that table is what this run would build: same
        code and upstream code, same variables, and no table it reads published since."""
        return logs.published_as(
            cur, model.table, self.versions.get(model.name, ""), self.model_inputs(model), upstream
        )

    def ensure_keys(self, cur: duckdb.DuckDBPyConnection, target: str) -> None:
        """The run's key set `target` (changes.CHANGED_KEYS or VERIFY_KEYS), made once per run.

        Reads every raw table as the run leaves it: a delete+insert model must come after all raw
        loads (ours do, through staging.stg_rejected_rows)."""
        with self._keys_lock:
            if target in self._keys_made:
                return
            raw_changes = self._raw_changes(cur)
            if target == VERIFY_KEYS and self.options.verify_slices == 1:
                statement = all_keys_statement(target, raw_changes)
            else:
                since = self._oldest_build(cur)
                slices = (self.options.verify_slices, self.started_at.toordinal() % self.options.verify_slices)
                statement = keys_statement(target, raw_changes, since, slices if target == VERIFY_KEYS else None)
            cur.execute(statement)
            self._keys_made.add(target)

    def _raw_changes(self, cur: duckdb.DuckDBPyConnection) -> dict[str, RawChange]:
        published = {
            f"{s}.{t}" for s, t in cur.execute("select schema_name, table_name from duckdb_tables()").fetchall()
        }
        raw_changes = {}
        for raw in RAW_TABLES:
            before = raw.table if raw.table in published else None
            pending = self.publication.relations.get(raw.name)
            if pending is None:
                raw_changes[raw.name] = RawChange(before, raw.table)
            else:
                delta = delta_name(raw.table) if pending.kind == "append" else None
                raw_changes[raw.name] = RawChange(before, pending.built, delta)
        return raw_changes

    def _oldest_build(self, cur: duckdb.DuckDBPyConnection) -> str | None:
        """The date of the oldest last publish of a maintained table, as an SQL literal."""
        if not self.maintained:
            return None
        since = logs.oldest_publish_date(cur, self.maintained)
        return f"date '{since}'" if since else None

    def ensure_analysis_date(self, cur: duckdb.DuckDBPyConnection) -> dt.date:
        """The options' date, else the data's; set on `cur`. Needs staging.stg_orders when not given."""
        with self._lock:
            if not self._date_known:
                if self.analysis_date is None:
                    self.analysis_date = cur.execute(self.retarget(DEFAULT_ANALYSIS_DATE_SQL)).fetchall()[0][0]
                self._date_known = True
                self.log.info(f"analysis date: {self.analysis_date}")
        cur.execute("set variable analysis_date = ?::date", [self.analysis_date])
        return self.analysis_date
