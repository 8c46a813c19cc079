"""What the run asks DuckDB about the warehouse itself, and how it writes a name into SQL: one
place for each, where a second engine would answer them its own way."""

from __future__ import annotations

import duckdb


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether `schema.name` is a table or a view of the connection's database."""
    schema, name = table.split(".", 1)
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, name]
        ).fetchone()[0]
    )


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
