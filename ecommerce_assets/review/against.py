"""The other warehouse a change is compared with (`--against`, `--defer-to`): production's warehouse
file or its readers' copy, attached read-only under one name."""

from __future__ import annotations

from pathlib import Path

import duckdb

from ecommerce_assets.errors import UsageError

OTHER = "against"


def attach(con: duckdb.DuckDBPyConnection, path: str, flag: str) -> None:
    """Attaches `path` read-only as `OTHER`; a missing file, or one a run holds, is a usage error."""
    if not Path(path).is_file():
        raise UsageError(f"{flag} {path}: no DuckDB file there")
    try:
        con.execute(f"attach '{path.replace(chr(39), chr(39) * 2)}' as {OTHER} (read_only)")
    except duckdb.IOException as e:
        raise UsageError(f"{flag} {path}: cannot be opened read-only now ({e})") from e


def relations(con: duckdb.DuckDBPyConnection, database: str = OTHER) -> set[str]:
    """`schema.name` of every table and view of `database`."""
    rows = con.execute(
        f"select schema_name, table_name from duckdb_tables() where database_name = '{database}' union all"
        f" select schema_name, view_name from duckdb_views() where database_name = '{database}' and not internal"
    ).fetchall()
    return {f"{schema}.{name}" for schema, name in rows}
