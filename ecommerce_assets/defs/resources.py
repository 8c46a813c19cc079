"""Configuration from the environment and the DuckDB resource.

Targets work like dbt's `--target`: ECOMMERCE_TARGET=dev|prod picks a set of defaults, and each
ECOMMERCE_* variable below overrides one of them.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
import zoneinfo
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from ecommerce_assets.errors import SettingError
from ecommerce_assets.paths import PROJECT_DIR, default_data_dir
from ecommerce_assets.run.context import RunOptions
from ecommerce_assets.run.publish import serving_path

TARGETS = {
    "dev": {"duckdb_path": "warehouse/dev.duckdb", "memory_limit": "2GB", "threads": 2, "concurrency": 2},
    "prod": {"duckdb_path": "warehouse/prod.duckdb", "memory_limit": "75%", "threads": 0, "concurrency": 4},
}

# The daily schedule's day plus a 2-hour margin for a slow or retried run.
DEFAULT_FRESHNESS_HOURS = 26

# DuckDB's memory_limit: a size (2GB, 512MiB) or a share of the machine's memory (75%).
_MEMORY_LIMIT = re.compile(r"\d+(\.\d+)?\s*([kmgt]i?b|b)|\d+(\.\d+)?%", re.IGNORECASE)


@dataclass(frozen=True)
class Settings:
    target: str
    duckdb_path: str
    data_dir: str
    output_dir: str
    memory_limit: str
    threads: int
    concurrency: int
    temp_directory: str
    schedule_cron: str
    schedule_timezone: str
    # Every table's freshness policy fails this many hours after its last materialization.
    freshness_hours: int = DEFAULT_FRESHNESS_HOURS
    # A raw table or mart that loses more than this share of its rows against the last publish warns.
    max_row_drop_percent: int = 50
    # equals_full_rebuild compares what changed and 1/verify_slices of all customers per run
    # (a different slice each day): every row within this many days; 1 compares everything.
    verify_slices: int = 7
    # The daily schedule's state until someone switches it in the UI: stopped in dev, so a laptop
    # never rebuilds on its own; a deployment sets ECOMMERCE_SCHEDULE_DEFAULT_STATUS=running.
    schedule_default_status: str = "stopped"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        target = env.get("ECOMMERCE_TARGET", "dev")
        if target not in TARGETS:
            raise SettingError(f"ECOMMERCE_TARGET={target!r}: use one of {', '.join(sorted(TARGETS))}")
        defaults = TARGETS[target]
        duckdb_path = _duckdb_path(_absolute(env.get("ECOMMERCE_DUCKDB_PATH", defaults["duckdb_path"])))
        return cls(
            target=target,
            duckdb_path=duckdb_path,
            data_dir=_absolute(env.get("ECOMMERCE_DATA_DIR", str(default_data_dir(target)))),
            output_dir=_absolute(env.get("ECOMMERCE_OUTPUT_DIR", "output")),
            memory_limit=_memory_limit(env.get("ECOMMERCE_DUCKDB_MEMORY_LIMIT", defaults["memory_limit"])),
            threads=_whole(env, "ECOMMERCE_DUCKDB_THREADS", defaults["threads"], minimum=0),
            concurrency=_whole(env, "ECOMMERCE_CONCURRENCY", defaults["concurrency"]),
            temp_directory=env.get("ECOMMERCE_DUCKDB_TEMP_DIR", duckdb_path + ".tmp"),
            schedule_cron=_cron(env.get("ECOMMERCE_SCHEDULE_CRON", "0 6 * * *")),
            schedule_timezone=_timezone(env.get("ECOMMERCE_SCHEDULE_TIMEZONE", "UTC")),
            freshness_hours=_whole(env, "ECOMMERCE_FRESHNESS_HOURS", DEFAULT_FRESHNESS_HOURS),
            max_row_drop_percent=_whole(env, "ECOMMERCE_MAX_ROW_DROP", 50, minimum=0, maximum=100),
            verify_slices=_whole(env, "ECOMMERCE_VERIFY_SLICES", 7, minimum=1),
            schedule_default_status=_choice(
                env, "ECOMMERCE_SCHEDULE_DEFAULT_STATUS", "stopped", ("running", "stopped")
            ),
        )


def _whole(env: dict[str, str], name: str, default: int, minimum: int = 1, maximum: int | None = None) -> int:
    value = env.get(name, str(default))
    if not value.isdigit() or int(value) < minimum or (maximum is not None and int(value) > maximum):
        allowed = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        raise SettingError(f"{name}={value!r}: use a whole number {allowed}")
    return int(value)


def _choice(env: dict[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, default)
    if value not in allowed:
        raise SettingError(f"{name}={value!r}: use one of {', '.join(allowed)}")
    return value


def _memory_limit(value: str) -> str:
    if not _MEMORY_LIMIT.fullmatch(value.strip()):
        raise SettingError(
            f"ECOMMERCE_DUCKDB_MEMORY_LIMIT={value!r}: use a size such as 2GB or 512MiB, or a share of memory such as 75%"
        )
    return value


def _cron(value: str) -> str:
    from dagster._utils.schedules import is_valid_cron_string  # what ScheduleDefinition checks

    if not is_valid_cron_string(value):
        raise SettingError(f"ECOMMERCE_SCHEDULE_CRON={value!r}: use a cron expression such as '0 6 * * *'")
    return value


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SettingError(
            f"ECOMMERCE_SCHEDULE_TIMEZONE={value!r}: use an IANA time zone such as UTC or Asia/Jakarta"
        ) from None
    return value


def _duckdb_path(path: str) -> str:
    """A file this process can create or write: a directory, or a folder it may not write, fails now
    instead of after the resource's ~100 s of connection retries."""
    if path == ":memory:":
        return path
    target = Path(path)
    if target.is_dir():
        raise SettingError(
            f"ECOMMERCE_DUCKDB_PATH={path!r} is a directory: name the DuckDB file, e.g. {path}/dev.duckdb"
        )
    folder = next(p for p in target.parents if p.exists())
    if not os.access(target if target.exists() else folder, os.W_OK):
        raise SettingError(f"ECOMMERCE_DUCKDB_PATH={path!r}: {target if target.exists() else folder} is not writable")
    return path


def _absolute(path: str) -> str:
    p = Path(path).expanduser()
    return str(p if p.is_absolute() or str(p) == ":memory:" else PROJECT_DIR / p)


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
