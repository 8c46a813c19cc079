"""Every table's columns as DuckDB itself binds them, and the SQL a run would execute (dbt compile).

When the definitions load, `bind` creates the raw tables, empty, with their declared types in an
in-memory DuckDB, then binds every model's exact build SQL (the select of build.py's
`create_statement`) in dependency order, and every check's failing-rows query. That gives each
asset its column names and types before anything runs, and a model or check that reads
an unknown column or calls an unknown function fails the load with the file and the line, like a
parse error. No data is read and no warehouse file is opened.

Binding costs ~0.2 s for this project (a DuckDB instance and ~100 statements), so its result is kept
in a cache file named by the hash of everything it depends on (the statements, the raw tables'
types, the macros, this file and DuckDB's version): a load whose SQL has not changed since the last
successful one reads it back in a millisecond. Only successful bindings are stored, so a broken
model or check always fails. When it does run, binding stays cheap: each model is bound with one
`describe` of its select, then stands as an empty table of those types for the models downstream
(a chain of views would be bound again by every view below it), and the optimizer is off (only the
binder's types and errors matter here).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ecommerce_assets.errors import ModelError, RawLoadError
from ecommerce_assets.ingest.files import source_files
from ecommerce_assets.project import sources as raw_loaders
from ecommerce_assets.project.changed import KEY_TABLES
from ecommerce_assets.project.checks import CheckDecl
from ecommerce_assets.project.header import read_header
from ecommerce_assets.project.lineage import column_lineage
from ecommerce_assets.project.models import Model
from ecommerce_assets.project.node import Node
from ecommerce_assets.project.relations import delta_name
from ecommerce_assets.project.sources import RawTable
from ecommerce_assets.run.adapter import Project, Selection
from ecommerce_assets.run.duckdb.build import (
    INCREMENTAL_COLUMNS,
    create_statement,
    export_statement,
    incremental_statement,
    located,
)
from ecommerce_assets.run.duckdb.database import quote_identifier
from ecommerce_assets.run.duckdb.logs import create_publish_log
from ecommerce_assets.run.plan import plan

# Any values do: binding needs only the variables' types, those a run sets (run/duckdb/context.py).
_VARIABLES = {
    "analysis_date": (dt.date(2000, 1, 1), "date"),
    "run_started_at": (dt.datetime(2000, 1, 1), "timestamp"),
    "max_row_drop": (0.5, "double"),
}


@dataclass(frozen=True)
class Catalog:
    """Each node's columns as DuckDB binds them: node name -> [(column, DuckDB type)], in table order."""

    columns: Mapping[str, list[tuple[str, str]]]


def model_lineage(models: Sequence[Model], catalog: Catalog) -> dict[str, dict[str, list[tuple[str, str]]]]:
    """Column lineage of every model (`lineage.column_lineage`) against the bound columns; an
    incremental model's own bookkeeping columns have none."""
    incremental = {m.name for m in models if m.merges}
    schemas = {
        name: [c for c, _ in columns if name not in incremental or c not in INCREMENTAL_COLUMNS]
        for name, columns in catalog.columns.items()
    }
    return column_lineage(models, schemas)


def default_cache_dir() -> Path | None:
    """$XDG_CACHE_HOME/ecommerce-assets/catalog, else ~/.cache/ecommerce-assets/catalog."""
    try:
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ecommerce-assets" / "catalog"
    except RuntimeError:  # no home directory
        return None


# Cache files kept (the newest); each is a few kB.
CACHE_FILES = 32


def bind(nodes: Sequence[Node], macros: Sequence[str] = (), cache: bool = True) -> Catalog:
    """Binds the raw tables (declared types), then every model and every check of `nodes`, which
    must be in dependency order (`models.resolve_deps`), against empty tables in memory.

    Raises ModelError naming the file and the line in the file of the first statement that fails.
    With `cache`, a binding of the same inputs that succeeded before is read from `default_cache_dir()`
    (an unreadable or unwritable cache is ignored).
    """
    cache_dir = default_cache_dir() if cache else None
    key = _cache_key(nodes, macros)
    catalog = _cached(cache_dir, key, nodes)
    if catalog is None:
        catalog = _bind(nodes, macros)
        _store(cache_dir, key, catalog)
    return catalog


def _cache_key(nodes: Sequence[Node], macros: Sequence[str]) -> str:
    """Everything the binding reads, but no file paths: they only appear in error messages."""
    inputs = [
        duckdb.__version__,
        Path(__file__).read_text(),
        list(macros),
        [
            [n.name, n.table, n.table_columns]
            if isinstance(n, RawTable)
            else [n.name, n.table, create_statement(n), [[c.name, n.check_sql[c.name]] for c in n.checks]]
            for n in nodes
        ],
    ]
    return hashlib.sha256(json.dumps(inputs).encode()).hexdigest()[:32]


def _cached(cache_dir: Path | None, key: str, nodes: Sequence[Node]) -> Catalog | None:
    if cache_dir is None:
        return None
    try:
        stored = json.loads((cache_dir / f"{key}.json").read_text())
        columns = {name: [(str(c), str(t)) for c, t in cs] for name, cs in stored.items()}
    except (OSError, ValueError, TypeError, AttributeError):  # missing or damaged: bind again
        return None
    return Catalog(columns) if set(columns) == {n.name for n in nodes} else None


def _store(cache_dir: Path | None, key: str, catalog: Catalog) -> None:
    """Written to a temp file, then renamed (a concurrent load reads a whole file or none); the
    oldest files beyond CACHE_FILES are removed."""
    if cache_dir is None:
        return
    tmp = cache_dir / f".{key}.{os.getpid()}.tmp"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(dict(catalog.columns)))
        os.replace(tmp, cache_dir / f"{key}.json")
        files = sorted(cache_dir.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in files[CACHE_FILES:]:
            old.unlink(missing_ok=True)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _bind(nodes: Sequence[Node], macros: Sequence[str]) -> Catalog:
    with empty_project(nodes, macros, optimize=False) as (con, columns):
        for model in nodes:
            for check in model.checks:
                _bind_check(con, model, check)
        return Catalog(columns)


@contextlib.contextmanager
def empty_project(
    nodes: Sequence[Node], macros: Sequence[str], optimize: bool = True
) -> Iterator[tuple[duckdb.DuckDBPyConnection, dict[str, list[tuple[str, str]]]]]:
    """An in-memory DuckDB where every node of `nodes` (in dependency order) stands as an empty table
    of its bound types, with the macros, the run's key sets and variables of any value; and the
    columns of each node. The model unit tests (model_cases) run their cases in it."""
    con = duckdb.connect(config={"threads": 1})
    try:
        if not optimize:
            con.execute("pragma disable_optimizer")  # the binder gives the types and the errors; nothing runs
        for schema in sorted({raw_loaders.SCHEMA, *(n.layer for n in nodes)}):
            con.execute(f"create schema if not exists {schema}")
        create_publish_log(con)  # the sudden-drop checks read it
        for keys in KEY_TABLES:  # the run's key sets, which delete+insert models and their checks read
            con.execute(f"create table {keys} (source varchar, key bigint)")
        for macro in macros:
            try:
                con.execute(macro)
            except duckdb.Error as e:
                name = re.search(r"\bmacro\s+([\w.]+)", macro, re.IGNORECASE)
                raise ModelError(f"macro {name.group(1) if name else macro[:60]!r}: {e}") from e
        for variable, (value, type_) in _VARIABLES.items():
            con.execute(f"set variable {variable} = ?::{type_}", [value])
        columns = {n.name: _bind_raw(con, n) if isinstance(n, RawTable) else _bind_model(con, n) for n in nodes}
        yield con, columns
    finally:
        con.close()


def _bind_raw(con: duckdb.DuckDBPyConnection, raw: RawTable) -> list[tuple[str, str]]:
    """The table `load.load` creates: the declared columns and `_loaded_at`."""
    try:
        _create_empty(con, raw.table, list(raw.table_columns.items()))
        return describe(con, raw.table)
    except duckdb.Error as e:
        raise ModelError(f"{raw_loaders.__file__}: {raw.table}: the declared columns: {e}") from e


def _bind_model(con: duckdb.DuckDBPyConnection, model: Model) -> list[tuple[str, str]]:
    head, _, select = create_statement(model).partition("\n")
    assert head.startswith("create ") and head.endswith(" as"), head  # the build is `create ... as\n<select>`
    statement = f"describe {select}"
    try:
        columns = describe(con, select)
        _create_empty(con, model.table, columns)
        return columns
    except duckdb.Error as e:
        raise located(e, statement, model.sql, model.path, model.sql_line) from e


def describe(con: duckdb.DuckDBPyConnection, table_or_query: str) -> list[tuple[str, str]]:
    return [(name, type_) for name, type_, *_ in con.execute(f"describe {table_or_query}").fetchall()]


def _create_empty(con: duckdb.DuckDBPyConnection, table: str, columns: list[tuple[str, str]]) -> None:
    con.execute(f"create table {table} ({', '.join(f'{quote_identifier(c)} {t}' for c, t in columns)})")


def _bind_check(con: duckdb.DuckDBPyConnection, model: Model, check: CheckDecl) -> None:
    sql = model.check_sql[check.name]
    # As the engine runs it: the failing-rows query as a subquery (audit.failing_rows).
    statement = f"describe select * from (\n{sql}\n)"
    try:
        con.execute(statement)
    except duckdb.Error as e:
        raise _check_error(e, statement, model, check) from e


def _check_error(error: Exception, statement: str, model: Model, check: CheckDecl) -> ModelError:
    """`path:line: check <name>: <DuckDB's message>`; the line is the query's for a `sql` check,
    the check's entry in the header for a column check."""
    if check.sql_line:
        # `path:line: message`, or `path: message` when DuckDB names no line.
        text = str(located(error, statement, model.check_sql[check.name], model.path, check.sql_line))
        line, _, message = text[len(str(model.path)) :].partition(": ")
        where = f"{model.path}{line}"
    else:
        line = _column_check_line(model, check)
        # Without DuckDB's `LINE n:` excerpt: its line is one of the generated query, not of the file.
        where, message = f"{model.path}{f':{line}' if line else ''}", str(error).split("\n\n")[0]
    return ModelError(f"{where}: check {check.name}: {message}")


def _column_check_line(model: Model, check: CheckDecl) -> int | None:
    """The header line of a column check's entry (the n-th check under its column)."""
    try:
        parsed, _ = read_header(model.path.read_text(), str(model.path))
    except (OSError, ModelError):
        return None
    same_column = [c.name for c in model.checks if c.kind != "sql" and c.column == check.column]
    return parsed.line_of(("columns", check.column, "checks", same_column.index(check.name)))


def compile_sql(project: Project, selection: Selection, data_dir: Path, output_dir: Path) -> str:
    """What a run of `selection` executes, in the order a one-worker run takes (`planner.plan`), each
    statement after a `-- <node> (<file>)` line: a raw table's files (as a comment), a model's build
    statement (an incremental model's merge too) and its export, each selected check's failing-rows
    query. Binds the whole project first (`bind`), so a broken model or check raises ModelError."""
    bind(project.nodes, project.macros)
    parts = []
    for task in plan(project.nodes, selection.checks):
        node = task.node
        if task.kind == "check":
            parts += [f"-- {node.name} check {c.name} ({node.path})\n{node.check_sql[c.name]};" for c in task.checks]
        elif node.name not in selection.assets:
            continue
        elif isinstance(node, RawTable):
            parts.append(f"-- {node.name} ({raw_loaders.__file__})\n-- {_loads(node, data_dir)}")
        else:
            parts += _model_statements(node, output_dir)
    return "\n\n".join(parts) + "\n"


def _loads(raw: RawTable, data_dir: Path) -> str:
    try:
        files = ", ".join(str(p) for p in source_files(data_dir, raw))
    except RawLoadError as e:
        return f"cannot load: {str(e).splitlines()[0]}"
    return f"loads {files} into {raw.table} (the declared columns, then _loaded_at)"


def _model_statements(model: Model, output_dir: Path) -> list[str]:
    header = f"-- {model.name} ({model.path})"
    statements = [f"{header}\n{create_statement(model)};"]
    if model.merges:
        statements.append(
            f"{header}: once the table exists, without --full-refresh\n{incremental_statement(model, model.table)};"
        )
    if model.maintained:
        statements += [
            f"{header}: once the table exists, without --full-refresh, the changed keys only\n"
            f"create or replace table {delta_name(model.table)} as\n{model.incremental.sql};",
            f"{header}: published with\ndelete from {model.table} where {model.incremental.where};\n"
            f"insert into {model.table} select * from {delta_name(model.table)};",
        ]
    if model.export:
        path = Path(output_dir) / "exports" / model.export.file
        statements.append(
            f"{header}: export (to a temp file beside it, then renamed)\n{export_statement(model, str(path))};"
        )
    return statements
