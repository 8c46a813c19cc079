"""Materializations: a model's SQL -> its view or table (incremental ones through one MERGE), its
export file, and what the catalog shows of the result. Plain DuckDB, no Dagster."""

from __future__ import annotations

import re
from dataclasses import replace
from functools import partial
from pathlib import Path

import duckdb

from ecommerce_assets.errors import ModelError
from ecommerce_assets.project.changed import CHANGED_KEYS
from ecommerce_assets.project.models import EXPORT_FORMATS, Model
from ecommerce_assets.project.relations import build_name, delta_name
from ecommerce_assets.project.sources import RawTable
from ecommerce_assets.run.adapter import DEFAULT_PREVIEW_ROWS, PREVIEW_ROWS, TableStats
from ecommerce_assets.run.duckdb.context import Run
from ecommerce_assets.run.duckdb.load import load
from ecommerce_assets.run.duckdb.publish import Pending
from ecommerce_assets.run.outputs import output_path

# What incremental_counts_sql counts, in its order -> the materialization's metadata.
INCREMENTAL_COUNTS = ("rows_inserted", "rows_updated", "rows_deleted")

_LINE = re.compile(r"\bLINE (\d+):")


# The columns an incremental model's table adds to its query's.
INCREMENTAL_COLUMNS = ("row_hash", "updated_at")


def _with_hash(model: Model, sql: str) -> str:
    # The hash covers every column of the query: a row is rewritten only when its content changed.
    return (
        "select incoming.*, hash(incoming) as row_hash, getvariable('run_started_at') as updated_at\n"
        f"from (\n{sql}\n) as incoming"
    )


def create_statement(model: Model, target: str | None = None, sql: str | None = None) -> str:
    """Build `target` (default: the model's table) from scratch, from `sql` (default: the model's);
    for an incremental model its first run or a full refresh."""
    sql = model.sql if sql is None else sql
    body = _with_hash(model, sql) if model.merges else sql
    kind = "table" if model.materialized == "incremental" else model.materialized
    return f"create or replace {kind} {target or model.table} as\n{body}"


def incremental_statement(model: Model, target: str | None = None, sql: str | None = None) -> str:
    """The incremental model's next table, built beside the published one: a row whose content did
    not change keeps its `updated_at`, every other row gets the run's."""
    key = model.unique_key
    sql = model.sql if sql is None else sql
    return (
        f"create or replace table {target or build_name(model.table)} as\n"
        "select incoming.* replace (\n"
        "    case when previous.row_hash = incoming.row_hash then previous.updated_at else incoming.updated_at end"
        " as updated_at\n)\n"
        f"from (\n{_with_hash(model, sql)}\n) as incoming\n"
        f"left join {model.table} as previous on previous.{key} = incoming.{key}"
    )


def incremental_counts_sql(model: Model, built: str) -> str:
    """Rows inserted, updated (content changed) and deleted between the published table and `built`."""
    key = model.unique_key
    return (
        "select count(*) filter (where p.{k} is null),"
        " count(*) filter (where n.{k} is not null and p.{k} is not null and p.row_hash <> n.row_hash),"
        " count(*) filter (where n.{k} is null)\n"
        f"from {built} as n full join {model.table} as p on n.{key} = p.{key}"
    ).replace("{k}", key)


def export_statement(model: Model, path: str, table: str | None = None) -> str:
    """COPY of the rows `export:` asks for to `path`; it answers with the number of rows written."""
    e = model.export
    query = f"select * from {table or model.table}"
    query += f" where {e.where}" if e.where else ""
    query += f" order by {e.order_by}" if e.order_by else ""
    quoted = "'" + path.replace("'", "''") + "'"
    return f"copy ({query}) to {quoted} ({EXPORT_FORMATS[Path(e.file).suffix]})"


def build_model(run: Run, cur: duckdb.DuckDBPyConnection, model: Model, exists: bool) -> dict:
    """The model's table or view under its build name, and its staged export; returns plain
    metadata (see defs/events.py). The run publishes them later, or drops them."""
    metadata: dict[str, object] = {}
    if model.uses_analysis_date:
        metadata["analysis_date"] = str(run.ensure_analysis_date(cur))
    version, inputs = run.versions.get(model.name, ""), run.model_inputs(model)
    kind = "view" if model.materialized == "view" else "table"
    pending = Pending(model.table, kind, model.sql, version=version, inputs=inputs)
    sql = run.retarget(model.sql)
    if model.maintained and exists and not run.options.full_refresh and run.in_sync(cur, model.table, version):
        pending, statement = maintain(run, cur, model, replace(pending, kind="upsert", where=model.incremental.where))
        metadata |= {"strategy": "delete+insert"} | upsert_counts(cur, pending)
    elif model.merges and exists and not run.options.full_refresh:
        statement = incremental_statement(model, pending.built, sql)
        _execute(cur, statement, model, sql)
        # Counted inside DuckDB: a daily run can rewrite every row (recency moves with the date).
        counts = cur.execute(incremental_counts_sql(model, pending.built)).fetchone()
        metadata |= dict(zip(INCREMENTAL_COUNTS, counts, strict=True))
    else:
        pending = replace(pending, from_scratch=True)
        statement = create_statement(model, pending.built, sql)
        _execute(cur, statement, model, sql)
    metadata["sql"] = statement
    if model.export:
        metadata |= export(run, cur, model, pending.built)
    run.built(model.name, pending)
    return metadata


def maintain(run: Run, cur: duckdb.DuckDBPyConnection, model: Model, pending: Pending) -> tuple[Pending, str]:
    """A delete+insert model's rows for the keys the run's changes reach, in `<table>__delta`, and
    the published table as it will be after the publish, as the view `<table>__build`."""
    run.ensure_keys(cur, CHANGED_KEYS)
    sql = run.retarget(model.incremental.sql)
    statement = f"create or replace table {delta_name(model.table)} as\n{sql}"
    _execute(cur, statement, model, sql)
    cur.execute(
        f"create or replace view {pending.built} as\n"
        f"select * from {model.table} where not ({pending.where})\n"
        f"union all select * from {delta_name(model.table)}"
    )
    return pending, statement


def upsert_counts(cur: duckdb.DuckDBPyConnection, pending: Pending) -> dict[str, int]:
    """Published rows the run replaces, and the rows it writes in their place."""
    replaced, written = cur.execute(
        f"select (select count(*) from {pending.table} where {pending.where}),"
        f" (select count(*) from {delta_name(pending.table)})"
    ).fetchone()
    return {"rows_replaced": replaced, "rows_written": written}


def build_raw(run: Run, cur: duckdb.DuckDBPyConnection, raw: RawTable) -> dict:
    loaded = load(cur, raw, run.options.data_dir, run.options.full_refresh)
    if loaded.pending:
        run.publication.load_log_rows += loaded.load_log_rows
        if loaded.mode == "replaced":
            run.publication.load_log_cleared.add(raw.name)
        run.built(raw.name, replace(loaded.pending, version=run.versions.get(raw.name, "")))
    return {"load": loaded.mode, "files_read": [str(p) for p in loaded.files]}


def export(run: Run, cur: duckdb.DuckDBPyConnection, model: Model, table: str) -> dict:
    """The rows the model's `export:` header asks for, written by DuckDB's COPY (csv or parquet)
    from `table`, staged until the run publishes the model.

    A file that cannot be written fails this model only (a ModelError naming the file)."""
    try:
        path = output_path(run.output_dir, "exports", model.export.file)
        statement = partial(export_statement, model, table=table)
        rows = run.stage_file(model.name, path, lambda tmp: cur.execute(statement(tmp)).fetchone()[0])
    except (OSError, duckdb.IOException) as e:
        raise ModelError(f"{model.path}: export {model.export.file}: {type(e).__name__}: {e}") from e
    return {"export_path": path, "export_rows": rows}


def _execute(cur: duckdb.DuckDBPyConnection, statement: str, model: Model, sql: str):
    """`statement`, which embeds the model's `sql`; a DuckDB error names the file line."""
    try:
        return cur.execute(statement)
    except duckdb.Error as e:
        raise located(e, statement, sql, model.path, model.sql_line) from e


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


def table_stats(cur: duckdb.DuckDBPyConnection, table: str, layer: str) -> TableStats:
    columns = [(c[0], c[1]) for c in cur.execute(f"describe {table}").fetchall()]
    rows = cur.execute(f"select count(*) from {table}").fetchone()[0]
    preview = cur.execute(f"select * from {table} limit {PREVIEW_ROWS.get(layer, DEFAULT_PREVIEW_ROWS)}")
    return TableStats(rows, columns, [d[0] for d in preview.description], preview.fetchall())
