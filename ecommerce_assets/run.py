"""What one run shares across its models: its options, its cursors and its analysis date."""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from pathlib import Path

import duckdb

# The run's analysis date unless its options set one: the latest completed order (the seed's RFM
# reference), so a rerun on the same data gives the same numbers whatever day it runs.
DEFAULT_ANALYSIS_DATE_SQL = (
    "select coalesce(max(order_date) filter (where is_completed), max(order_date), current_date)"
    " from staging.stg_orders"
)


@dataclass(frozen=True)
class RunOptions:
    data_dir: Path
    output_dir: Path
    concurrency: int = 1
    full_refresh: bool = False
    analysis_date: dt.date | None = None

    def __post_init__(self):
        if self.concurrency < 1:
            raise ValueError(f"concurrency={self.concurrency}: use 1 or more")

    @staticmethod
    def parse_date(value: str | None, setting: str = "analysis_date") -> dt.date | None:
        """A YYYY-MM-DD date, checked before anything is built; the message names `setting`."""
        if not value:
            return None
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{setting}={value!r} is not a YYYY-MM-DD date") from None


class Run:
    """One run's state. Each worker thread gets its own cursor of the run's connection (DuckDB runs
    statements of different cursors at the same time); DuckDB variables belong to a cursor, so
    each cursor gets them."""

    def __init__(self, con: duckdb.DuckDBPyConnection, options: RunOptions, log=None):
        self.con = con
        self.options = options
        self.log = log
        self.cursors: list[duckdb.DuckDBPyConnection] = []
        self.started_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        self.analysis_date = options.analysis_date
        self._date_known = False
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
        if self._date_known:
            cur.execute("set variable analysis_date = ?::date", [self.analysis_date])
        return cur

    def interrupt(self) -> None:
        """Ends the statement running on every cursor (from any thread)."""
        for cur in [self.con, *list(self.cursors)]:
            cur.interrupt()

    def close(self) -> None:
        for cur in self.cursors:
            cur.close()

    def ensure_analysis_date(self, cur: duckdb.DuckDBPyConnection) -> dt.date:
        """The options' date, else the data's; set on `cur`. Needs staging.stg_orders when not given."""
        with self._lock:
            if not self._date_known:
                if self.analysis_date is None:
                    self.analysis_date = cur.execute(DEFAULT_ANALYSIS_DATE_SQL).fetchall()[0][0]
                self._date_known = True
                self.log.info(f"analysis date: {self.analysis_date}")
        cur.execute("set variable analysis_date = ?::date", [self.analysis_date])
        return self.analysis_date
