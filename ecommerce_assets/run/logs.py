"""The run's three logs, in schema `raw` beside the tables they describe: what was published, what
was checked, which files were loaded. A run writes them in its publish transaction, so they always
describe the published tables.
"""

from __future__ import annotations

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
