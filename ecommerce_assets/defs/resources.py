"""The DuckDB resource and the warehouse step's run config (the settings themselves: settings.py)."""

from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from ecommerce_assets.run.duckdb.serve import serving_path
from ecommerce_assets.run.options import RunOptions
from ecommerce_assets.settings import Settings


class DuckDBWarehouse(DuckDBResource):
    """dagster-duckdb's resource with DuckDB's resource limits as settings, and one writer at a time.

    DuckDB allows one writing process per file. Runs from the UI, the schedule and the CLI may
    overlap, so a connection first takes an exclusive lock file beside the database: a second
    run waits for the first instead of failing with DuckDB's lock error.
    """

    memory_limit: str = Field(default="2GB", description="DuckDB memory_limit, e.g. '2GB' or '75%'.")
    threads: int = Field(default=0, description="DuckDB threads; 0 keeps DuckDB's default (all cores).")
    temp_directory: str = Field(default="", description="Where DuckDB spills when over memory_limit.")
    lock_timeout_s: float = Field(default=3600, description="How long a run waits for another run's lock.")

    @classmethod
    def from_settings(cls, settings: Settings) -> DuckDBWarehouse:
        return cls(
            database=settings.duckdb_path,
            memory_limit=settings.memory_limit,
            threads=settings.threads,
            temp_directory=settings.temp_directory,
        )

    @contextmanager
    def get_connection(self):
        with self.connect() as (con, _):
            yield con

    @contextmanager
    def connect(self, holder: str = ""):
        """A connection once this process holds the writer lock, and who held the lock last without
        releasing it (a run whose process died; "" when the last holder ended normally).

        `holder` (a run id) is written into the lock file while the connection is open."""
        # No model's table has a meaningful row order (exports say `order_by`), and keeping it makes
        # DuckDB hold whole intermediate results in memory: at 10M customers two large builds at
        # once ran out of a 2GB limit with it.
        limits = {"memory_limit": self.memory_limit, "preserve_insertion_order": False}
        if self.threads:
            limits["threads"] = self.threads
        if self.temp_directory:
            limits["temp_directory"] = self.temp_directory
        config = {**self.connection_config, **limits}
        with (
            self._writer_lock(holder) as previous,
            DuckDBResource(database=self.database, connection_config=config).get_connection() as con,
        ):
            try:
                yield con, previous
            finally:
                # The parent closes only on success; a failed run must not leave the file open.
                con.close()

    @contextmanager
    def _writer_lock(self, holder: str):
        if self.database == ":memory:":
            yield ""
            return
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        # Opened without truncating: what the last holder wrote is read once the lock is ours.
        with open(self.database + ".lock", "a+") as handle:
            deadline = time.monotonic() + self.lock_timeout_s
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"{self.database} is still in use by another run after {self.lock_timeout_s:.0f} s"
                        ) from None
                    time.sleep(0.2)
            try:
                handle.seek(0)
                previous = handle.read().strip()
                _rewrite(handle, holder)
                yield previous
            finally:
                _rewrite(handle, "")  # released while alive: nothing for the next holder to report
                fcntl.flock(handle, fcntl.LOCK_UN)


def _rewrite(handle, text: str) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(text)
    handle.flush()


class SparkWarehouse(dg.ConfigurableResource):
    """A Spark session (ECOMMERCE_ENGINE=spark): through Spark Connect, or in this process from a
    master URL, with its tables under `warehouse_path` (run/spark/session.py)."""

    remote: str = Field(default="", description="Spark Connect URL, e.g. sc://host:15002 (else `master`).")
    master: str = Field(default="local[*]", description="Spark master URL, e.g. local[*] or spark://host:7077.")
    warehouse_path: str = Field(description="Folder or URL of the tables' files (spark.sql.warehouse.dir).")

    @classmethod
    def from_settings(cls, settings: Settings) -> SparkWarehouse:
        return cls(remote=settings.spark_remote, master=settings.spark_master, warehouse_path=settings.warehouse_path)

    def session(self):
        """The process's session (created on first use, then shared: Spark allows one per process)."""
        from ecommerce_assets.run.spark.session import spark_session

        return spark_session(self.remote, self.master, self.warehouse_path)


class PipelineConfig(dg.Config):
    """Run config of the warehouse step (Materialize all > Open launchpad: ops -> warehouse -> config).

    Every field has a concrete default, so the Launchpad shows them all, prefilled; an empty value
    (0 for concurrency) means the setting's default."""

    analysis_date: str = Field(
        default="",
        description="YYYY-MM-DD date recency, account age and trend windows are measured to. "
        "Empty: the latest completed order date in the data.",
    )
    full_refresh: bool = Field(
        default=False,
        description="Reload every raw file and rebuild incremental models from scratch (dbt's --full-refresh).",
    )
    data_dir: str = Field(
        default="",
        description="Directory with raw_customers, raw_orders, raw_order_items, raw_products "
        "(.csv or .parquet). Empty: ECOMMERCE_DATA_DIR, else data/ (dev: else the bundled sample data).",
    )
    concurrency: int = Field(
        default=0,
        description="Statements run at a time (dbt's --threads); 1 runs them back to back. "
        "0: ECOMMERCE_CONCURRENCY, else 2 (dev) or 4 (prod).",
    )

    def run_options(self, settings: Settings) -> RunOptions:
        """The engine's options; a bad value is a one-line error naming the setting."""
        try:
            if self.concurrency < 0:
                raise ValueError(f"concurrency={self.concurrency}: use 1 or more (0: ECOMMERCE_CONCURRENCY)")
            return RunOptions(
                data_dir=Path(self.data_dir or settings.data_dir),
                output_dir=Path(settings.output_dir),
                concurrency=self.concurrency or settings.concurrency,
                full_refresh=self.full_refresh,
                analysis_date=RunOptions.parse_date(self.analysis_date),
                serving_path=None if settings.duckdb_path == ":memory:" else serving_path(settings.duckdb_path),
                max_row_drop=settings.max_row_drop_percent / 100,
                verify_slices=settings.verify_slices,
            )
        except ValueError as e:
            raise dg.Failure(f"run config {e}") from None
