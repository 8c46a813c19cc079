"""The run's three logs, in schema `raw` beside the tables they describe: what was published, what
was checked, which files were loaded. A run writes them in its publish transaction, so they always
describe the published tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from ecommerce_assets.project.sources import SCHEMA

# Per run and published table: its rows once published (the sudden-drop checks compare to it).
PUBLISH_LOG = "raw._published"
# Per check run on a published table: its failing rows. A table kept as it is reports them again,
# and a table with a failed blocking check since its publish is rebuilt, never kept or maintained.
CHECK_LOG = "raw._checked"
# Per raw file loaded: its path, size and mtime (the next load reads only what changed).
LOAD_LOG = f"{SCHEMA}._loaded_files"


def create_load_log(con: duckdb.DuckDBPyConnection) -> None:
    """The table of files already loaded (path, size, mtime), which makes the next load incremental."""
    con.execute(
        f"create table if not exists {LOAD_LOG} (table_name varchar, file varchar, size bigint, mtime_ns bigint, loaded_at timestamp)"
    )


def create_publish_log(con: duckdb.DuckDBPyConnection) -> None:
    """The publish log, and the macro the sudden-drop checks read it with."""
    con.execute(
        f"create table if not exists {PUBLISH_LOG} (run_id varchar, table_name varchar, row_count bigint, published_at timestamp)"
    )
    # Added after the first release: a warehouse made before them gets the columns here.
    con.execute(f"alter table {PUBLISH_LOG} add column if not exists code_version varchar")
    con.execute(f"alter table {PUBLISH_LOG} add column if not exists inputs varchar")
    con.execute(
        f"create table if not exists {CHECK_LOG} (table_name varchar, check_name varchar, failing bigint,"
        " blocking boolean, run_id varchar, checked_at timestamp)"
    )
    con.execute(
        "create or replace macro published_row_count(t) as (select row_count from "
        f"{PUBLISH_LOG} where table_name = t order by published_at desc limit 1)"
    )


# The published table `m` failed no blocking check since its publish (a row written by hand, a
# maintained table that drifted): such a table is rebuilt from scratch, never kept or maintained.
_NOT_BROKEN = (
    f"not exists (select 1 from {CHECK_LOG} as c where c.table_name = m.table_name"
    " and c.blocking and c.failing > 0 and c.checked_at >= m.last_published)"
)


def in_sync(cur: duckdb.DuckDBPyConnection, table: str, version: str) -> bool:
    """`table` was last published with code `version`, not before any raw table's last publish,
    and failed no blocking check since."""
    return bool(
        cur.execute(
            f"""
            with latest as (
                select table_name, arg_max(code_version, published_at) as version, max(published_at) as last_published
                from {PUBLISH_LOG} group by table_name
            )
            select coalesce((select version = ? and last_published >= (
                select max(last_published) from latest where table_name like '{SCHEMA}.%'
            ) and {_NOT_BROKEN} from latest as m where table_name = ?), false)
            """,
            [version, table],
        ).fetchone()[0]
    )


def published_as(
    cur: duckdb.DuckDBPyConnection, table: str, version: str, inputs: str, upstream: list[str]
) -> str | None:
    """The run that last published `table` with this code `version` and these `inputs`, when no
    table of `upstream` was published since and it failed no blocking check since; else None."""
    marks = ", ".join("?" for _ in upstream) or "null"
    row = cur.execute(
        f"""
        with latest as (
            select table_name, arg_max(run_id, published_at) as run_id,
                arg_max(code_version, published_at) as version, arg_max(inputs, published_at) as inputs,
                max(published_at) as last_published
            from {PUBLISH_LOG} group by table_name
        )
        select run_id from latest as m
        where table_name = ? and version = ? and inputs = ? and {_NOT_BROKEN}
          and not exists (
              select 1 from latest as d where d.table_name in ({marks}) and d.last_published > m.last_published
          )
        """,
        [table, version, inputs, *upstream],
    ).fetchone()
    return row[0] if row else None


def oldest_publish_date(cur: duckdb.DuckDBPyConnection, tables: Sequence[str]):
    """The oldest of the dates `tables` were last published on (None: none of them was)."""
    if not tables:
        return None
    marks = ", ".join("?" for _ in tables)
    return cur.execute(
        f"select min(last_date) from (select max(published_at)::date as last_date from {PUBLISH_LOG}"
        f" where table_name in ({marks}) group by table_name)",
        list(tables),
    ).fetchone()[0]


def record_checks(cur: duckdb.DuckDBPyConnection, rows: list[list]) -> None:
    """Check outcomes on published tables: (table, check, failing rows, blocking, run id)."""
    if rows:
        cur.executemany(f"insert into {CHECK_LOG} values (?, ?, ?, ?, ?, getvariable('run_started_at'))", rows)


def checks_since_publish(cur: duckdb.DuckDBPyConnection, table: str) -> dict[str, tuple[int, str]]:
    """Check name -> (failing rows, run id) of its last outcome on `table` as published now."""
    rows = cur.execute(
        f"""
        select check_name, failing, run_id from {CHECK_LOG}
        where table_name = ? and checked_at >= (select max(published_at) from {PUBLISH_LOG} where table_name = ?)
        qualify row_number() over (partition by check_name order by checked_at desc) = 1
        """,
        [table, table],
    ).fetchall()
    return {name: (failing, run_id) for name, failing, run_id in rows}


def loaded_files(con: duckdb.DuckDBPyConnection, table_name: str) -> dict[str, tuple[int, int]]:
    """File -> (size, mtime in ns) of what the load log says `table_name` holds."""
    return {
        f: (size, mtime)
        for f, size, mtime in con.execute(
            f"select file, size, mtime_ns from {LOAD_LOG} where table_name = ?", [table_name]
        ).fetchall()
    }


def latest_runs(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """'schema.name' -> the run that published it last, from the publish log (empty without one)."""
    schema, table = PUBLISH_LOG.split(".")
    exists = con.execute(
        "select count(*) from duckdb_tables() where database_name = current_database() and schema_name = ? and table_name = ?",
        [schema, table],
    ).fetchone()[0]
    if not exists:
        return {}
    rows = con.execute(
        f"""
        select table_name, run_id from {PUBLISH_LOG}
        qualify row_number() over (partition by table_name order by published_at desc, rowid desc) = 1
        """
    ).fetchall()
    return {relation: run_id for relation, run_id in rows if run_id is not None}


def latest_publish_query(database: str | None = None) -> str:
    """Each published table's latest fingerprint (`code_version`) and `inputs`, from the publish log of
    `database` (default: the current one): what `ecommerce-assets plan` compares a checkout with."""
    log = f"{database}.{PUBLISH_LOG}" if database else PUBLISH_LOG
    return (
        "select table_name, arg_max(code_version, published_at) as code_version,"
        f" arg_max(inputs, published_at) as inputs from {log} group by all"
    )
