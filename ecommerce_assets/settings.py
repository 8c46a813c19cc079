"""Configuration from the environment, validated when it is read.

Targets work like dbt's `--target`: ECOMMERCE_TARGET=dev|prod picks a set of defaults, and each
ECOMMERCE_* variable below overrides one of them.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

from ecommerce_assets.errors import SettingError
from ecommerce_assets.paths import PROJECT_DIR, default_data_dir

TARGETS = {
    "dev": {
        "duckdb_path": "warehouse/dev.duckdb",
        "memory_limit": "2GB",
        "threads": 2,
        "concurrency": 2,
        "warehouse_path": "warehouse/spark-dev",
    },
    "prod": {
        "duckdb_path": "warehouse/prod.duckdb",
        "memory_limit": "75%",
        "threads": 0,
        "concurrency": 4,
        "warehouse_path": "warehouse/spark-prod",
    },
}

# ECOMMERCE_ENGINE: where the models run. The same SQL files on both (DuckDB SQL, transpiled for Spark).
ENGINES = ("duckdb", "spark")
# Spark's own master URLs: local mode, a standalone cluster, YARN, Kubernetes.
_SPARK_MASTER = re.compile(r"local(\[(\*|\d+)(,\s*\d+)?\])?|(spark|k8s|mesos)://\S+|yarn")
_SPARK_REMOTE = re.compile(r"sc://[^/\s:]+(:\d+)?(/\S*)?")

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
    # The engine the models run on, and for Spark: how to reach it (a Spark Connect URL, else a
    # master URL, local[*] by default) and where its tables' files live (a folder, or a cluster
    # file system or object store URL).
    engine: str = "duckdb"
    spark_remote: str = ""
    spark_master: str = ""
    warehouse_path: str = ""

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
            engine=_choice(env, "ECOMMERCE_ENGINE", "duckdb", ENGINES),
            **_spark(env, defaults["warehouse_path"]),
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


def _spark(env: dict[str, str], default_warehouse: str) -> dict[str, str]:
    """The Spark settings, checked whichever engine is chosen: a typo shows before the switch."""
    remote, master = env.get("ECOMMERCE_SPARK_REMOTE", ""), env.get("ECOMMERCE_SPARK_MASTER", "")
    if remote and not _SPARK_REMOTE.fullmatch(remote):
        raise SettingError(f"ECOMMERCE_SPARK_REMOTE={remote!r}: use a Spark Connect URL such as sc://host:15002")
    if master and not _SPARK_MASTER.fullmatch(master):
        raise SettingError(
            f"ECOMMERCE_SPARK_MASTER={master!r}: use a Spark master URL such as local[*], local[2] or spark://host:7077"
        )
    if remote and master:
        raise SettingError(
            f"ECOMMERCE_SPARK_MASTER={master!r}: set it or ECOMMERCE_SPARK_REMOTE, not both (the server has its master)"
        )
    path = env.get("ECOMMERCE_WAREHOUSE_PATH", default_warehouse)
    if not path.strip():
        raise SettingError(f"ECOMMERCE_WAREHOUSE_PATH={path!r}: use a folder or a URL such as s3a://bucket/warehouse")
    # A URL (hdfs://, s3a://, abfss://) is the cluster's to resolve; a plain path is this checkout's.
    warehouse = path if "://" in path else _absolute(path)
    if "://" not in path and Path(warehouse).is_file():
        raise SettingError(f"ECOMMERCE_WAREHOUSE_PATH={path!r} is a file: name the folder Spark's tables go in")
    return {
        "spark_remote": remote,
        "spark_master": master or ("" if remote else "local[*]"),
        "warehouse_path": warehouse,
    }


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


def require_data_dir(data_dir: str, setting: str = "ECOMMERCE_DATA_DIR") -> None:
    """Checked when a run would load raw files, before it opens the warehouse: a mistyped folder
    is a usage error that writes nothing, not four failed loads and a new, empty warehouse file.
    Not checked when the settings are read: the definitions load, and runs of checks or of models
    alone work, without the raw files."""
    if not Path(data_dir).is_dir():
        raise SettingError(f"{setting}={data_dir!r}: no such folder (the folder of the raw_* files)")
