"""Materializations: a model's SQL -> its view or table (incremental ones through one MERGE), its
export file, and what the catalog shows of the result. Plain DuckDB, no Dagster."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import duckdb

from ecommerce_assets.models import EXPORT_FORMATS, Model, ModelError
from ecommerce_assets.raw import RawTable, load
from ecommerce_assets.run import Run

# Rows shown in the catalog: a sample of a model, the whole answer of an analysis (up to 50).
PREVIEW_ROWS = {"analyses": 50}
DEFAULT_PREVIEW_ROWS = 5

# What the merge reports (its RETURNING merge_action) -> the materialization's metadata.
MERGE_COUNTS = {"INSERT": "rows_inserted", "UPDATE": "rows_updated", "DELETE": "rows_deleted"}

T = TypeVar("T")

_LINE = re.compile(r"\bLINE (\d+):")


# The columns an incremental model's table adds to its query's.
INCREMENTAL_COLUMNS = ("row_hash", "updated_at")


def _with_hash(model: Model) -> str:
    # The hash covers every column of the query: a row is rewritten only when its content changed.
    return (
        "select incoming.*, hash(incoming) as row_hash, getvariable('run_started_at') as updated_at\n"
        f"from (\n{model.sql}\n) as incoming"
    )


def create_statement(model: Model) -> str:
    """Build from scratch (for an incremental model: its first run or a full refresh)."""
    body = _with_hash(model) if model.materialized == "incremental" else model.sql
    kind = "table" if model.materialized == "incremental" else model.materialized
    return f"create or replace {kind} {model.table} as\n{body}"


def merge_statement(model: Model) -> str:
    """An incremental run in one statement: insert new keys, rewrite changed rows, delete vanished
    keys; unchanged rows keep their updated_at. It returns each changed row's merge_action."""
    key = model.unique_key
    return (
        f"merge into {model.table} as t\nusing (\n{_with_hash(model)}\n) as s\non t.{key} = s.{key}\n"
        "when matched and t.row_hash is distinct from s.row_hash then update set *\n"
        "when not matched then insert *\n"
        "when not matched by source then delete\n"
        "returning merge_action"
    )


def export_statement(model: Model, path: str) -> str:
    """COPY of the rows `export:` asks for to `path`; it answers with the number of rows written."""
    e = model.export
    query = f"select * from {model.table}"
    query += f" where {e.where}" if e.where else ""
    query += f" order by {e.order_by}" if e.order_by else ""
    quoted = "'" + path.replace("'", "''") + "'"
    return f"copy ({query}) to {quoted} ({EXPORT_FORMATS[Path(e.file).suffix]})"


def build_model(run: Run, cur: duckdb.DuckDBPyConnection, model: Model, exists: bool) -> dict:
    """The model's table or view, and its export; returns plain metadata (see results.py)."""
    metadata: dict[str, object] = {}
    if model.uses_analysis_date:
        metadata["analysis_date"] = str(run.ensure_analysis_date(cur))
    if model.materialized == "incremental" and exists and not run.options.full_refresh:
        statement = merge_statement(model)
        # Counted inside DuckDB: a daily run can rewrite every row (recency moves with the date).
        changes = dict(_execute(cur, statement, model, cur.sql).aggregate("merge_action, count(*)").fetchall())
        metadata |= {key: changes.get(action, 0) for action, key in MERGE_COUNTS.items()}
    else:
        statement = create_statement(model)
        _execute(cur, statement, model)
    metadata["sql"] = statement
    if model.export:
        metadata |= export(cur, model, run.output_dir)
    return metadata


def build_raw(run: Run, cur: duckdb.DuckDBPyConnection, raw: RawTable) -> dict:
    loaded = load(cur, raw, run.options.data_dir, run.options.full_refresh)
    return {"load": loaded.mode, "files_read": [str(p) for p in loaded.files]}


def export(cur: duckdb.DuckDBPyConnection, model: Model, output_dir: Path) -> dict:
    """The rows the model's `export:` header asks for, written by DuckDB's COPY (csv or parquet).

    A file that cannot be written fails this model only (a ModelError naming the file)."""
    try:
        path = output_path(output_dir, "exports", model.export.file)
        rows = write_atomically(path, lambda tmp: cur.execute(export_statement(model, tmp)).fetchone()[0])
    except (OSError, duckdb.IOException) as e:
        raise ModelError(f"{model.path}: export {model.export.file}: {type(e).__name__}: {e}") from e
    return {"export_path": path, "export_rows": rows}


def output_path(output_dir: Path, folder: str, file_name: str) -> Path:
    directory = Path(output_dir) / folder
    directory.mkdir(parents=True, exist_ok=True)
    return directory / file_name


def write_atomically(path: Path, write: Callable[[str], T]) -> T:
    """Write to a temp file beside `path`, then rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        result = write(str(tmp))
        os.replace(tmp, path)
        return result
    finally:
        tmp.unlink(missing_ok=True)


def _execute(cur: duckdb.DuckDBPyConnection, statement: str, model: Model, method=None):
    """`statement` through `method` (default `cur.execute`); a DuckDB error names the file line."""
    try:
        return (method or cur.execute)(statement)
    except duckdb.Error as e:
        raise located(e, statement, model.sql, model.path, model.sql_line) from e


def located(error: Exception, statement: str, sql: str, path: Path, first_line: int) -> ModelError:
    """`error` from running `statement`, which embeds `sql` (line `first_line` of `path`), as an error
    naming the file and the line in the file. DuckDB counts its `LINE n:` from the statement."""
    before = statement[: max(statement.find(sql), 0)].count("\n")
    message = str(error)
    match = _LINE.search(message)
    if match is None:
        return ModelError(f"{path}: {message}")
    line = first_line + int(match.group(1)) - 1 - before
    return ModelError(f"{path}:{line}: {_LINE.sub(f'LINE {line}:', message, count=1)}")


@dataclass(frozen=True)
class TableStats:
    """What the catalog shows of a built table: its size, its columns and a few rows."""

    rows: int
    columns: list[tuple[str, str]]  # name, DuckDB type
    preview_columns: list[str]
    preview: list[tuple]


def table_stats(cur: duckdb.DuckDBPyConnection, table: str, layer: str) -> TableStats:
    columns = [(c[0], c[1]) for c in cur.execute(f"describe {table}").fetchall()]
    rows = cur.execute(f"select count(*) from {table}").fetchone()[0]
    preview = cur.execute(f"select * from {table} limit {PREVIEW_ROWS.get(layer, DEFAULT_PREVIEW_ROWS)}")
    return TableStats(rows, columns, [d[0] for d in preview.description], preview.fetchall())
