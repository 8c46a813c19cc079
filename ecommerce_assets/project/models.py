"""Reads `sql/<layer>/<model>.sql` into `Model` records.

Each file is one model: a YAML header in a leading `/* ... */` comment (description, tags,
column descriptions, checks) and a plain DuckDB `select`. The file name is the table and the
asset name, the folder its schema and layer. Upstream tables are parsed from the SQL itself.

Nothing in a model file fails silently: the header is validated (header.py), and every
error names the file and the line in the file, for the header and the SQL alike.
"""

from __future__ import annotations

import graphlib
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import sqlglot
from sqlglot import exp

from ecommerce_assets.errors import ChangedMacroError, ModelError
from ecommerce_assets.paths import SQL_DIR
from ecommerce_assets.project import changed as changes
from ecommerce_assets.project.checks import (
    VOLUME_CHECKED_LAYERS,
    CheckDecl,
    column_check,
    equals_full_rebuild_check,
    row_count_drop_check,
    sql_check,
)
from ecommerce_assets.project.header import EXPORT_FORMATS, dagster_owner, read_header

__all__ = [
    "EXPORT_FORMATS",
    "Export",
    "Model",
    "load_macros",
    "load_models",
    "parse_model",
    "resolve_deps",
]

# Every folder of sql/ is a layer (its group, schema and tag) except this one.
MACROS_DIR = "macros"

# Materialization per layer, the way dbt_project.yml sets it per folder; `materialized:` in a
# header overrides it. The one place the defaults are declared.
MATERIALIZED_BY_LAYER: dict[str, str] = {"staging": "view"}
DEFAULT_MATERIALIZED = "table"

# Owner per layer (the asset's owner in Dagster: a team name or an email); `owner:` in a header
# overrides it. The raw loaders belong to the "raw" layer here. A layer not listed (a new folder
# of sql/) belongs to DEFAULT_OWNER, the team that runs the warehouse, until its header or this
# table says otherwise. The one place the defaults are declared.
OWNER_BY_LAYER: dict[str, str] = {
    "raw": "data-engineering",
    "staging": "data-engineering",
    "intermediate": "data-engineering",
    "marts": "analytics",
    "ml": "analytics",
    "analyses": "analytics",
}
DEFAULT_OWNER = "data-engineering"

# In a check's SQL, the check's own model table (SQLMesh's @this_model), replaced before parsing.
THIS_MODEL = re.compile(r"@this_model\b", re.IGNORECASE)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def default_materialized(layer: str) -> str:
    return MATERIALIZED_BY_LAYER.get(layer, DEFAULT_MATERIALIZED)


def default_owner(layer: str) -> str:
    """The layer's owner as Dagster writes it: `team:<name>` or an email."""
    return dagster_owner(OWNER_BY_LAYER.get(layer, DEFAULT_OWNER))


@dataclass(frozen=True)
class Export:
    """A file the model's materialization writes: its rows, optionally filtered and ordered."""

    file: str
    where: str | None = None
    order_by: str | None = None


# Columns that say when a run built or loaded a row, not what the row is: a maintained row keeps
# the run that last rewrote it (and a raw file delivered again reloads every row at a new time
# while only the changed ones are rebuilt), so the comparison with a full rebuild leaves them out,
# and so does a table diff (two builds differ there by construction).
RUN_TIME_COLUMNS = ("run_started_at", "updated_at", "loaded_at", "feature_generated_at")


@dataclass(frozen=True)
class Incremental:
    """How an incremental model's next table is made from the published one.

    `merge`: the whole query, a row's `updated_at` kept while its hash is the same. `delete+insert`:
    `sql` (the query cut to the run's changed keys) replaces the rows `where` selects; `verify_sql`
    and `verify_where` are the same over the keys the `equals_full_rebuild` check compares."""

    strategy: str
    sql: str = ""
    where: str = ""
    verify_sql: str = ""
    verify_where: str = ""


@dataclass(frozen=True)
class Model:
    name: str
    layer: str
    path: Path
    # The file's text from line `sql_line` (1-based) on, minus trailing whitespace and semicolons:
    # line N of the statement is line sql_line + N - 1 of the file.
    sql: str
    sql_line: int
    materialized: str
    description: str
    tags: tuple[str, ...]
    columns: dict[str, str]
    checks: tuple[CheckDecl, ...]
    # `team:<name>` or an email: the header's `owner:`, else the layer's (OWNER_BY_LAYER).
    owner: str
    unique_key: str | None = None
    incremental: Incremental | None = None
    export: Export | None = None
    table_refs: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    # getvariable('analysis_date') is read by the model's SQL or by one of its checks.
    uses_analysis_date: bool = False
    # getvariable('run_started_at') is read by the model's SQL or one of its checks: the run's day
    # is one of its inputs (a row dated after it is rejected as in the future).
    uses_run_date: bool = False
    deps: tuple[str, ...] = ()
    # Filled by resolve_deps: check name -> failing-rows query, and the other tables it reads.
    check_sql: dict[str, str] = field(default_factory=dict, compare=False)
    check_count_sql: dict[str, str] = field(default_factory=dict, compare=False)
    check_deps: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)

    @property
    def run_after(self) -> tuple[str, ...]:
        """Upstream models plus the tables its checks read: all must be built before it."""
        return tuple(dict.fromkeys([*self.deps, *(t for ts in self.check_deps.values() for t in ts)]))

    @property
    def table(self) -> str:
        return f"{self.layer}.{self.name}"

    @property
    def merges(self) -> bool:
        """Incremental by merge: every row recomputed, with `row_hash` and `updated_at` added."""
        return self.incremental is not None and self.incremental.strategy == "merge"

    @property
    def maintained(self) -> bool:
        """Incremental by delete+insert: only the keys the run's raw changes reach are rebuilt."""
        return self.incremental is not None and self.incremental.strategy == "delete+insert"

    @cached_property
    def code_version(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]


def parse_model(path: Path, layer: str) -> Model:
    """One model file; `layer` is its folder. Every error names the file and the line in it."""
    text = path.read_text()
    where = str(path)
    parsed, body_start = read_header(text, where)
    header, error = parsed.header, parsed.error
    sql_line = text.count("\n", 0, body_start) + 1
    template = text[body_start:].rstrip(" \t\r\n;")
    if not template.strip():
        raise ModelError(f"{where}:{sql_line}: no SQL after the header")
    try:
        body = changes.expand(template, None)  # the full build: every `@changed(...)` is true
    except ChangedMacroError as e:
        raise ModelError(f"{where}:{sql_line}: {e}") from None
    tree = parse_sql(body, where, sql_line)

    materialized = header.materialized or default_materialized(layer)
    name, table = path.stem, f"{layer}.{path.stem}"
    incremental = _incremental(header, materialized, template, error, where)
    checks: list[tuple[tuple, CheckDecl]] = []
    for column, spec in header.columns.items():
        for i, entry in enumerate(spec.checks):
            checks.append((("columns", column, "checks", i), column_check(table, column, entry)))
    uses_analysis_date = _reads_variable(tree, "analysis_date")
    uses_run_date = _reads_variable(tree, "run_started_at")
    for i, spec in enumerate(header.checks):
        first_line = parsed.text_line(("checks", i, "sql"), spec.sql)
        sql = THIS_MODEL.sub(table, spec.sql).strip().rstrip(" \t\r\n;")
        check_tree = parse_sql(sql, where, first_line)
        uses_analysis_date |= _reads_variable(check_tree, "analysis_date")
        uses_run_date |= _reads_variable(check_tree, "run_started_at")
        checks.append((("checks", i), sql_check(table, spec, sql, first_line)))
    if incremental and incremental.strategy == "delete+insert":
        excluded = [c for c in header.columns if c in RUN_TIME_COLUMNS]
        check = equals_full_rebuild_check(
            table, header.unique_key, incremental.verify_sql, incremental.verify_where, excluded
        )
        checks.append((("incremental_strategy",), check))
    seen: set[str] = set()
    for loc, check in checks:
        if check.name in seen:
            raise error(loc, f"check name {check.name} is used twice in this model")
        seen.add(check.name)

    return Model(
        name=name,
        layer=layer,
        path=path,
        sql=body,
        sql_line=sql_line,
        materialized=materialized,
        unique_key=header.unique_key,
        incremental=incremental,
        export=Export(**header.export.model_dump()) if header.export else None,
        description=(header.description or f"{layer} model {name}").strip(),
        tags=tuple(dict.fromkeys([layer, *header.tags])),
        columns={column: spec.description for column, spec in header.columns.items()},
        checks=tuple(check for _, check in checks),
        owner=header.owner or default_owner(layer),
        table_refs=_table_refs(tree),
        uses_analysis_date=uses_analysis_date,
        uses_run_date=uses_run_date,
    )


def _incremental(header, materialized: str, template: str, error, where: str) -> Incremental | None:
    """The header's incremental settings, validated; the SQL variants of a delete+insert model."""
    if materialized == "incremental" and header.unique_key is None:
        raise error(("materialized",), "an incremental model needs a unique_key")
    for key in ("unique_key", "incremental_strategy", "replace_where"):
        if materialized != "incremental" and getattr(header, key) is not None:
            raise error((key,), f"only an incremental model takes a {key} (this one is a {materialized})")
    if materialized != "incremental":
        if changes.uses_changed(template):
            raise ModelError(f"{where}: @changed(...) is for a model with incremental_strategy: delete+insert")
        return None
    strategy = header.incremental_strategy or "merge"
    if strategy == "merge":
        if header.replace_where is not None or changes.uses_changed(template):
            raise error(("replace_where",), "replace_where and @changed(...) need incremental_strategy: delete+insert")
        return Incremental("merge")
    replace_where = header.replace_where or f"@changed({header.unique_key})"
    if not changes.uses_changed(template):
        raise error(("incremental_strategy",), "a delete+insert model filters its inputs with @changed(<key>)")
    try:
        variants = [changes.expand(sql, keys) for keys in changes.KEY_TABLES for sql in (template, replace_where)]
    except ChangedMacroError as e:
        raise error(("replace_where",), str(e)) from None
    return Incremental(strategy, *variants)


def parse_sql(sql: str, where: str, line: int | None = None) -> exp.Expression:
    """The one statement `sql` holds. Errors name `where`, and the file line when `line`, the line
    of the file `sql` starts on, is given (sqlglot counts lines from the start of `sql`)."""

    def at(statement_line: int = 1) -> str:
        return f"{where}:{line + statement_line - 1}" if line else where

    try:
        statements = [
            s for s in sqlglot.parse(sql, read="duckdb") if s is not None and not isinstance(s, exp.Semicolon)
        ]
    except sqlglot.errors.ParseError as e:
        first = e.errors[0] if e.errors else {}
        column = f" (column {first['col']})" if first.get("col") else ""
        raise ModelError(
            f"{at(first.get('line') or 1)}: cannot parse the SQL{column}: {first.get('description') or e}"
        ) from e
    except sqlglot.errors.SqlglotError as e:
        raise ModelError(f"{at()}: cannot parse the SQL: {e}") from e
    if len(statements) != 1:
        raise ModelError(f"{at()}: expected one SQL statement, found {len(statements)}")
    return statements[0]


def _table_refs(tree: exp.Expression) -> frozenset[tuple[str, str]]:
    """What the query reads, but its CTEs and the run's key sets (changes.KEY_TABLES)."""
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    return frozenset(
        (t.db, t.name)
        for t in tree.find_all(exp.Table)
        if t.name and not (not t.db and t.name in ctes) and f"{t.db}.{t.name}" not in changes.KEY_TABLES
    )


def _reads_variable(tree: exp.Expression, variable: str) -> bool:
    """getvariable('<variable>'), the function's name in any case."""
    return any(
        f.name.lower() == "getvariable"
        and len(f.expressions) == 1
        and isinstance(f.expressions[0], exp.Literal)
        and f.expressions[0].is_string
        and f.expressions[0].this == variable
        for f in tree.find_all(exp.Anonymous)
    )


def sql_table_refs(sql: str, where: str = "query", line: int | None = None) -> frozenset[tuple[str, str]]:
    """(schema, table) pairs the query reads, CTE names excluded."""
    return _table_refs(parse_sql(sql, where, line))


def _ref_line(sql: str, line: int | None, schema: str, table: str) -> int | None:
    """The file line where `sql`, starting on file line `line`, reads schema.table."""
    if line is None:
        return None
    for t in parse_sql(sql, "query").find_all(exp.Table):
        if (t.db, t.name) == (schema, table) and t.this.meta.get("line"):
            return line + t.this.meta["line"] - 1
    return line


def retarget(sql: str, tables: Mapping[str, str]) -> str:
    """`sql` reading other relations: each `schema.table` key of `tables` (as written in the SQL,
    any case) becomes its value. Runs use it to read what they built but have not published yet.

    Textual on purpose: sqlglot would regenerate the whole statement, and DuckDB-only syntax
    (lambdas, macros) must reach DuckDB exactly as written."""
    if not tables:
        return sql
    by_name = {name.lower(): target for name, target in tables.items()}
    pattern = re.compile(
        r"(?<![\w.\"'])(" + "|".join(re.escape(n) for n in sorted(by_name, key=len, reverse=True)) + r")(?![\w\"])",
        re.IGNORECASE,
    )
    return pattern.sub(lambda m: by_name[m.group(1).lower()], sql)


def resolve_deps(models: list[Model], source_tables: dict[str, str]) -> list[Model]:
    """Turn table references into upstream asset names and check queries; fail on unknown tables.

    `source_tables` maps the name of every non-model asset (the raw tables) to its schema.
    Returns the models in an order where each comes after its upstream models and after the
    tables its checks read.
    """
    schema_of = {**source_tables, **{m.name: m.layer for m in models}}

    def asset_names(refs, model: Model, what: str, sql: str, line: int | None) -> tuple[str, ...]:
        names = []
        for schema, table in sorted(refs):
            if table not in schema_of or (schema and schema != schema_of[table]):
                known = ", ".join(f"{s}.{t}" for t, s in sorted(schema_of.items()))
                ref_line = _ref_line(sql, line, schema, table)
                raise ModelError(
                    f"{model.path}{f':{ref_line}' if ref_line else ''}: {what} reads "
                    f"{schema + '.' if schema else ''}{table}, which is no model or raw table of this "
                    f"project. Known tables: {known}"
                )
            names.append(table)
        return tuple(dict.fromkeys(names))

    def table_of(model: Model, check: CheckDecl):
        def lookup(name: str) -> str:
            if name not in schema_of:
                raise ModelError(f"{model.path}: check {check.name} refers to unknown model {name!r}")
            return f"{schema_of[name]}.{name}"

        return lookup

    resolved = []
    for model in models:
        deps = asset_names(model.table_refs, model, "the model", model.sql, model.sql_line)
        if model.name in deps:
            raise ModelError(f"{model.path}: the model reads its own table {model.table}")
        check_sql = {c.name: c.failing_rows_sql(table_of(model, c)) for c in model.checks}
        check_count_sql = {c.name: c.failing_count_sql(table_of(model, c)) for c in model.checks}
        check_deps = {}
        for check in model.checks:
            sql = check_sql[check.name]
            refs = sql_table_refs(sql, f"{model.path} check {check.name}", check.sql_line)
            names = asset_names(refs, model, f"check {check.name}", sql, check.sql_line)
            check_deps[check.name] = tuple(t for t in names if t != model.name)
        resolved.append(
            replace(model, deps=deps, check_sql=check_sql, check_count_sql=check_count_sql, check_deps=check_deps)
        )
    return _inherit_column_descriptions(_topological(resolved))


def _inherit_column_descriptions(models: list[Model]) -> list[Model]:
    """A column a model passes through unchanged keeps the description an upstream model gave it."""
    described: dict[str, dict[str, str]] = {}
    inherited = []
    for model in models:  # in dependency order, so upstream descriptions are complete
        columns = {}
        for dep in model.deps:
            columns |= {c: d for c, d in described.get(dep, {}).items() if d and c not in columns}
        columns |= {c: d for c, d in model.columns.items() if d}
        described[model.name] = columns
        inherited.append(replace(model, columns=columns))
    return inherited


def _topological(models: list[Model]) -> list[Model]:
    """Each model after the models it runs after; the same models always come in the same order."""
    by_name = {m.name: m for m in models}
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for model in sorted(models, key=lambda m: (m.layer, m.name)):
        sorter.add(model.name, *sorted(d for d in model.run_after if d in by_name))
    try:
        return [by_name[name] for name in sorter.static_order()]
    except graphlib.CycleError as e:
        cycle = e.args[1]
        files = ", ".join(str(by_name[name].path) for name in dict.fromkeys(cycle))
        raise ModelError(f"dependency cycle: {' -> '.join(cycle)} ({files})") from e


def load_models(sql_dir: Path = SQL_DIR) -> list[Model]:
    """Every model under `sql_dir/<layer>/`, unresolved (see `resolve_deps`).

    Every folder of `sql_dir` but `macros/` is a layer (names starting with a dot are skipped).
    A `.sql` file anywhere else, and finding no model at all, are errors.
    """
    if not sql_dir.is_dir():
        raise ModelError(f"{sql_dir}: no such directory of model files")
    files = sorted(
        relative
        for relative in (p.relative_to(sql_dir) for p in sql_dir.rglob("*.sql"))
        if not any(part.startswith(".") for part in relative.parts)
    )
    misplaced = [f for f in files if len(f.parts) != 2]
    if misplaced:
        raise ModelError(
            f"{sql_dir / misplaced[0]}: not read: a model file belongs directly in {sql_dir}/<layer>/ and a "
            f"macro in {sql_dir / MACROS_DIR}/ (misplaced: {', '.join(map(str, misplaced))})"
        )
    models = []
    seen: dict[str, Path] = {}
    for relative in files:
        layer, path = relative.parts[0], sql_dir / relative
        if layer == MACROS_DIR:
            continue
        for what, name in (("layer", layer), ("model", path.stem)):
            if not _NAME.fullmatch(name):
                raise ModelError(f"{path}: the {what} name {name!r} is not an SQL identifier (letters, digits, _)")
        if path.stem in seen:
            raise ModelError(f"{path}: model name {path.stem} is also used by {seen[path.stem]}")
        seen[path.stem] = path
        model = parse_model(path, layer)
        if layer in VOLUME_CHECKED_LAYERS:
            model = replace(model, checks=(*model.checks, row_count_drop_check(model.table)))
        models.append(model)
    if not models:
        raise ModelError(f"{sql_dir}: no model files found (sql/<layer>/<model>.sql)")
    return models


def load_macros(sql_dir: Path = SQL_DIR) -> list[str]:
    """`create or replace macro` statements run before any model, in file-name order."""
    return [p.read_text() for p in sorted((sql_dir / MACROS_DIR).glob("*.sql"))]
