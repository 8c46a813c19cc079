"""Reads `sql/<layer>/<model>.sql` into `Model` records.

Each file is one model: a YAML header in a leading `/* ... */` comment (description, tags,
column descriptions, checks) and a plain DuckDB `select`. The file name is the table and the
asset name, the folder its schema and layer. Upstream tables are parsed from the SQL itself.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import sqlglot
import yaml
from sqlglot import exp

from ecommerce_assets.checks import CheckDecl, parse_checks
from ecommerce_assets.paths import SQL_DIR

# Materialization and tag per layer, the way dbt_project.yml sets them per folder.
LAYERS: dict[str, str] = {
    "staging": "view",
    "intermediate": "table",
    "marts": "table",
    "ml": "table",
    "analyses": "table",
}

MATERIALIZATIONS = ("view", "table", "incremental")

# `export:` in a header writes the model's rows to <output_dir>/exports/<file> with DuckDB's COPY.
EXPORT_FORMATS = {".csv": "format csv, header true", ".parquet": "format parquet"}

# The run's analysis date unless the run config sets one: the latest completed order (the seed's
# RFM reference), so a rerun on the same data gives the same numbers whatever day it runs.
DEFAULT_ANALYSIS_DATE_SQL = (
    "select coalesce(max(order_date) filter (where is_completed), max(order_date), current_date)"
    " from staging.stg_orders"
)

_HEADER = re.compile(r"\A\s*/\*(.*?)\*/", re.S)


@dataclass(frozen=True)
class Export:
    """A file the model's materialization writes: its rows, optionally filtered and ordered."""

    file: str
    where: str | None = None
    order_by: str | None = None


class ModelError(ValueError):
    """A model file that cannot be turned into an asset; the message names the file."""


@dataclass(frozen=True)
class Model:
    name: str
    layer: str
    path: Path
    sql: str
    materialized: str
    description: str
    tags: tuple[str, ...]
    columns: dict[str, str]
    checks: tuple[CheckDecl, ...]
    unique_key: str | None = None
    export: Export | None = None
    table_refs: frozenset[tuple[str, str]] = field(default_factory=frozenset)
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
    def uses_analysis_date(self) -> bool:
        return "getvariable('analysis_date')" in self.sql

    @cached_property
    def code_version(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]

    def create_statement(self) -> str:
        """Build from scratch (for an incremental model: its first run or a full refresh)."""
        if self.materialized == "incremental":
            return (
                f"create or replace table {self.table} as\n"
                f"select incoming.*, hash(incoming) as row_hash, getvariable('run_started_at') as updated_at\n"
                f"from (\n{self.sql}\n) as incoming"
            )
        return f"create or replace {self.materialized} {self.table} as\n{self.sql}"

    def export_statement(self, path: str) -> str:
        """COPY of the rows `export:` asks for to `path`; it answers with the number of rows written."""
        e = self.export
        query = f"select * from {self.table}"
        query += f" where {e.where}" if e.where else ""
        query += f" order by {e.order_by}" if e.order_by else ""
        quoted = "'" + path.replace("'", "''") + "'"
        return f"copy ({query}) to {quoted} ({EXPORT_FORMATS[Path(e.file).suffix]})"

    def merge_statements(self) -> list[str]:
        """An incremental run: upsert on unique_key only the rows whose content changed.

        A row's hash covers every column of the query, so a customer is rewritten when their
        orders, profile or date-relative measures changed; unchanged rows keep their updated_at.
        The last statement returns (inserted, updated, deleted).
        """
        key, table = self.unique_key, self.table
        return [
            f"create or replace temp table incoming as\n"
            f"select incoming.*, hash(incoming) as row_hash from (\n{self.sql}\n) as incoming",
            f"create or replace temp table changes as\n"
            f"select coalesce(n.{key}, t.{key}) as {key},\n"
            f"    case when t.{key} is null then 'insert' when n.{key} is null then 'delete' else 'update' end as change\n"
            f"from incoming as n full join {table} as t on n.{key} = t.{key}\n"
            f"where n.row_hash is distinct from t.row_hash",
            f"delete from {table} where {key} in (select {key} from changes where change <> 'insert')",
            f"insert into {table}\n"
            f"select n.*, getvariable('run_started_at') from incoming as n\n"
            f"where n.{key} in (select {key} from changes where change <> 'delete')",
            "select count(*) filter (where change = 'insert'), count(*) filter (where change = 'update'),"
            " count(*) filter (where change = 'delete') from changes",
        ]


def parse_model(path: Path, layer: str, default_materialized: str = "table") -> Model:
    text = path.read_text()
    match = _HEADER.match(text)
    header: dict = {}
    body = text
    if match:
        try:
            header = yaml.safe_load(match.group(1)) or {}
        except yaml.YAMLError as e:
            raise ModelError(f"{path}: the header comment is not valid YAML: {e}") from e
        body = text[match.end() :]
    body = body.strip().rstrip(";").strip()
    if not body:
        raise ModelError(f"{path}: no SQL after the header")
    unknown = set(header) - {"description", "tags", "columns", "checks", "materialized", "unique_key", "export"}
    if unknown:
        raise ModelError(f"{path}: unknown header keys {sorted(unknown)}")
    materialized = header.get("materialized", default_materialized)
    if materialized not in MATERIALIZATIONS:
        raise ModelError(f"{path}: materialized must be one of {MATERIALIZATIONS}, not {materialized!r}")
    if (materialized == "incremental") != ("unique_key" in header):
        raise ModelError(f"{path}: an incremental model needs a unique_key, and only it takes one")

    name = path.stem
    columns = header.get("columns") or {}
    return Model(
        name=name,
        layer=layer,
        path=path,
        sql=body,
        materialized=materialized,
        unique_key=header.get("unique_key"),
        export=_parse_export(header.get("export"), path),
        description=(header.get("description") or f"{layer} model {name}").strip(),
        tags=tuple(dict.fromkeys([layer, *header.get("tags", [])])),
        columns={col: (spec or {}).get("description", "") for col, spec in columns.items()},
        checks=parse_checks(f"{layer}.{name}", columns, header.get("checks") or [], where=str(path)),
        table_refs=sql_table_refs(body, where=str(path)),
    )


def _parse_export(spec, path: Path) -> Export | None:
    if spec is None:
        return None
    if not isinstance(spec, dict) or "file" not in spec or set(spec) - {"file", "where", "order_by"}:
        raise ModelError(f"{path}: export takes file and optionally where and order_by, got {spec!r}")
    if Path(spec["file"]).name != spec["file"] or Path(spec["file"]).suffix not in EXPORT_FORMATS:
        raise ModelError(f"{path}: export file must be a plain file name ending in one of {sorted(EXPORT_FORMATS)}")
    return Export(**spec)


def sql_table_refs(sql: str, where: str = "query") -> frozenset[tuple[str, str]]:
    """(schema, table) pairs the query reads, CTE names excluded."""
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError as e:
        raise ModelError(f"{where}: cannot parse the SQL: {e}") from e
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    return frozenset(
        (t.db, t.name)
        for t in tree.find_all(exp.Table)
        if t.name and not (not t.db and t.name in ctes)
    )


def resolve_deps(models: list[Model], source_tables: dict[str, str]) -> list[Model]:
    """Turn table references into upstream asset names and check queries; fail on unknown tables.

    `source_tables` maps the name of every non-model asset (the raw tables) to its schema.
    Returns the models in an order where each comes after its upstream models and after the
    tables its checks read.
    """
    schema_of = {**source_tables, **{m.name: m.layer for m in models}}

    def asset_names(refs, model: Model, what: str) -> tuple[str, ...]:
        names = []
        for schema, table in sorted(refs):
            if table not in schema_of or (schema and schema != schema_of[table]):
                known = ", ".join(f"{s}.{t}" for t, s in sorted(schema_of.items()))
                raise ModelError(
                    f"{model.path}: {what} reads {schema + '.' if schema else ''}{table}, which is "
                    f"no model or raw table of this project. Known tables: {known}"
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
        deps = asset_names(model.table_refs, model, "the model")
        if model.name in deps:
            raise ModelError(f"{model.path}: the model reads its own table {model.table}")
        check_sql = {c.name: c.failing_rows_sql(table_of(model, c)) for c in model.checks}
        check_count_sql = {c.name: c.failing_count_sql(table_of(model, c)) for c in model.checks}
        check_deps = {
            name: tuple(
                t for t in asset_names(sql_table_refs(sql, f"{model.path} check {name}"), model, f"check {name}")
                if t != model.name
            )
            for name, sql in check_sql.items()
        }
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
    by_name = {m.name: m for m in models}
    ordered: list[Model] = []
    state: dict[str, str] = {}

    def visit(model: Model, chain: tuple[str, ...]) -> None:
        if state.get(model.name) == "done":
            return
        if state.get(model.name) == "visiting":
            raise ModelError(f"dependency cycle: {' -> '.join((*chain, model.name))}")
        state[model.name] = "visiting"
        for dep in model.run_after:
            if dep in by_name:
                visit(by_name[dep], (*chain, model.name))
        state[model.name] = "done"
        ordered.append(model)

    for model in sorted(models, key=lambda m: (list(LAYERS).index(m.layer) if m.layer in LAYERS else 99, m.name)):
        visit(model, ())
    return ordered


def load_models(
    sql_dir: Path = SQL_DIR, layers: dict[str, str] = LAYERS
) -> list[Model]:
    """Every model under `sql_dir/<layer>/`, unresolved (see `resolve_deps`)."""
    models = []
    seen: dict[str, Path] = {}
    for layer, materialized in layers.items():
        for path in sorted((sql_dir / layer).glob("*.sql")):
            if path.stem in seen:
                raise ModelError(f"{path}: model name {path.stem} is also used by {seen[path.stem]}")
            seen[path.stem] = path
            models.append(parse_model(path, layer, materialized))
    return models


def load_macros(sql_dir: Path = SQL_DIR) -> list[str]:
    """`create or replace macro` statements run before any model, in file-name order."""
    return [p.read_text() for p in sorted((sql_dir / "macros").glob("*.sql"))]
