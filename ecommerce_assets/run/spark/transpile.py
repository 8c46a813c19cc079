"""The project's DuckDB SQL as Spark SQL: sqlglot's transpiler, plus what it gets wrong or cannot
express for this project.

Lives in the run stage, beside the Spark engine, because a dialect is how a run executes, not what
the project is: the model files stay DuckDB SQL (runnable in the DuckDB CLI), and the definitions
transpile every model and check once when they load, so a construct Spark cannot run fails the
load with the model file and line, as `compile` does on DuckDB.

Rewritten on the DuckDB tree before Spark's SQL is generated:
- the project's macros (sql/macros/*.sql define them for DuckDB): Spark SQL has no macros, so
  `SPARK_MACROS` holds Spark's definition of each, expanded inline at each call;
- `getvariable('x')`: the Spark session variable `system.session.x`, declared by each run;
- `percentile_cont(q) within group (order by x)`: Spark's exact `percentile(x, q)` (sqlglot writes
  `percentile_approx`, which moved products across the performance tiers' boundaries);
- `dayname`, `json_object` (nulls kept, as DuckDB keeps them), `isinf`;
- `hash(alias)`, a row's hash in DuckDB: `hash(alias.*)`, Spark's hash of every column;
- `* exclude (...)`: the columns spelled out, from the bound catalog's schemas (Spark has no EXCEPT).
Casts, `datediff('day', ...)`, date arithmetic, `anti join`, `is not distinct from` and `filter
(where ...)` are sqlglot's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError

from ecommerce_assets.errors import ModelError
from ecommerce_assets.project.models import Model, parse_sql
from ecommerce_assets.project.node import Node
from ecommerce_assets.run.duckdb.build import create_statement
from ecommerce_assets.run.duckdb.context import DEFAULT_ANALYSIS_DATE_SQL
from ecommerce_assets.run.duckdb.logs import PUBLISH_LOG

# The variables a run sets (run/duckdb/context.py on DuckDB), with their Spark types.
VARIABLES = {"analysis_date": "date", "run_started_at": "timestamp", "max_row_drop": "double"}

# Spark's definition of each macro of sql/macros/, with the argument as `{0}`; same semantics as
# DuckDB's (Spark's own initcap upper-cases only after a space: "o'neil" would stay "O'neil").
SPARK_MACROS = {
    "initcap": (
        "array_join(transform(regexp_extract_all({0}, '[\\\\p{{L}}\\\\p{{N}}]+|[^\\\\p{{L}}\\\\p{{N}}]+', 0),"
        " part -> concat(upper(substr(part, 1, 1)), lower(substr(part, 2)))), '')"
    ),
    "published_row_count": (
        f"(select row_count from {PUBLISH_LOG} where table_name = {{0}} order by published_at desc limit 1)"
    ),
}

Schemas = Mapping[str, Mapping[str, Sequence[str]]]  # schema -> table -> column names, in order


def to_spark(sql: str, where: str, line: int | None = None, schemas: Schemas | None = None) -> str:
    """`sql` (DuckDB) as Spark SQL. Errors name `where` and the file line, like `models.parse_sql`."""
    tree = parse_sql(sql, where, line)
    try:
        tree = _expand_excludes(tree, schemas or {}, where)
        tree = tree.transform(_rewrite)
        return tree.sql(dialect="spark", pretty=True, unsupported_level=ErrorLevel.RAISE)
    except SqlglotError as e:
        raise ModelError(f"{where}{f':{line}' if line else ''}: no Spark SQL for this: {e}") from e


@dataclass(frozen=True)
class Transpiled:
    """A project's SQL on Spark: each model's select (an incremental model's with its row hash),
    each check's failing-rows query, and the query of the run's default analysis date."""

    models: Mapping[str, str]
    checks: Mapping[tuple[str, str], str]
    analysis_date: str


def transpile_project(nodes: Sequence[Node], columns: Mapping[str, Sequence[tuple[str, str]]]) -> Transpiled:
    """Every model and check of `nodes`; `columns` (the bound catalog: node name -> columns) spells
    out `* exclude`. Raises ModelError naming the file and line of the first that Spark cannot run."""
    schemas: dict[str, dict[str, list[str]]] = {}
    for node in nodes:
        schemas.setdefault(node.layer, {})[node.name] = [c for c, _ in columns.get(node.name, ())]
    models, checks = {}, {}
    for node in nodes:
        if isinstance(node, Model):
            statement = create_statement(node)
            select = statement.partition("\n")[2]
            # The line of the file the select starts on: the hash wrapper adds lines before the model's SQL.
            line = node.sql_line - select[: max(select.find(node.sql), 0)].count("\n")
            models[node.name] = to_spark(select, str(node.path), line, schemas)
        for check in node.checks:
            where = f"{node.path} check {check.name}"
            checks[(node.name, check.name)] = to_spark(node.check_sql[check.name], where, check.sql_line, schemas)
    return Transpiled(models, checks, to_spark(DEFAULT_ANALYSIS_DATE_SQL, "the run's default analysis date"))


def compile_spark(
    nodes: Sequence[Node], selected: set[str], checks: set[tuple[str, str]], transpiled: Transpiled
) -> str:
    """What a Spark run of `selected` (and the `checks` pairs) executes, in its order: `compile`
    under ECOMMERCE_ENGINE=spark. `<run>` stands for the run's version suffix (run/spark/adapter.py)."""
    parts = []
    for node in nodes:
        if node.name in selected:
            target = f"{node.table}__r<run>"
            if isinstance(node, Model):
                parts.append(
                    f"-- {node.name} ({node.path})\ncreate table {target} using parquet as\n{transpiled.models[node.name]};"
                )
            else:
                parts.append(f"-- {node.name}: its files into {target} (the declared columns, cast; then _loaded_at)")
        for check in node.checks:
            if (node.name, check.name) in checks:
                sql = transpiled.checks[(node.name, check.name)]
                parts.append(f"-- {node.name} check {check.name} ({node.path})\n{sql};")
    parts.append(
        "-- then, for each table whose blocking checks (and its upstream's) passed:\n"
        "-- create or replace view <schema>.<name> as select * from <schema>.<name>__r<run>;"
    )
    return "\n\n".join(parts) + "\n"


def variable_statements(values: Mapping[str, object]) -> list[str]:
    """Spark statements that set the run's variables (declared first: a session starts without them)."""
    statements = []
    for name, type_ in VARIABLES.items():
        value = values.get(name)
        literal = "null" if value is None else f"cast('{value}' as {type_})"
        statements.append(f"declare or replace variable {name} {type_} default {literal}")
    return statements


def _call(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _function_name(node: exp.Expression) -> str | None:
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    if isinstance(node, exp.Func):
        return node.sql_name().lower()
    return None


def _macro(name: str, args: list[exp.Expression]) -> exp.Expression:
    body = SPARK_MACROS[name].format(*(a.sql(dialect="spark") for a in args))
    return sqlglot.parse_one(body, read="spark")


def _rewrite(node: exp.Expression) -> exp.Expression:
    name = _function_name(node)
    if name is None:
        if isinstance(node, exp.WithinGroup) and isinstance(node.this, (exp.PercentileCont, exp.Anonymous)):
            order = node.expression.expressions[0].this
            quantile = node.this.this if isinstance(node.this, exp.PercentileCont) else node.this.expressions[0]
            return _call("percentile", order.copy(), quantile.copy())
        return node
    args = [a for a in node.iter_expressions() if not isinstance(a, exp.Order)]
    if name == "getvariable":
        variable = node.expressions[0].this
        return exp.column(variable, table="session", db="system")
    if name in SPARK_MACROS:
        return _macro(name, list(node.expressions) if isinstance(node, exp.Anonymous) else args)
    if name == "dayname":
        return _call(
            "date_format",
            node.this if not isinstance(node, exp.Anonymous) else node.expressions[0],
            exp.Literal.string("EEEE"),
        )
    if name in ("isinf", "is_inf") or isinstance(node, exp.IsInf):
        value = node.this if not isinstance(node, exp.Anonymous) else node.expressions[0]
        return exp.paren(
            exp.EQ(this=_call("abs", value), expression=exp.cast(exp.Literal.string("Infinity"), "double")),
            copy=False,
        )
    if isinstance(node, exp.JSONObject):
        pairs = []
        for pair in node.expressions:
            pairs += [pair.this, pair.expression]
        options = _call("map", exp.Literal.string("ignoreNullFields"), exp.Literal.string("false"))
        return _call("to_json", _call("named_struct", *pairs), options)
    if name == "hash" and isinstance(node, exp.Anonymous) and len(node.expressions) == 1:
        arg = node.expressions[0]
        if isinstance(arg, exp.Column) and not arg.table and arg.name in _aliases(node):
            return _call("hash", exp.Column(this=exp.Star(), table=exp.to_identifier(arg.name)))
    return node


def _aliases(node: exp.Expression) -> set[str]:
    """The table and subquery aliases of the query `node` is in."""
    root = node.root()
    return {a.name for a in root.find_all(exp.TableAlias)}


def _expand_excludes(tree: exp.Expression, schemas: Schemas, where: str) -> exp.Expression:
    """`select * exclude (a, b) from x`: the columns of `x` but a and b, from `schemas` for a table
    and from the select list of a subquery or CTE."""
    for select in list(tree.find_all(exp.Select)):
        if any(isinstance(e, exp.Star) and e.args.get("except_") for e in select.expressions):
            _expand_stars(select, schemas, where)
    return tree


def _source_columns(select: exp.Select, schemas: Schemas, where: str) -> list[str]:
    source = select.args["from_"].this
    if isinstance(source, exp.Table):
        cte = next(
            (c for c in select.root().find_all(exp.CTE) if c.alias_or_name == source.name and not source.db), None
        )
        if cte is not None:
            return list(cte.this.named_selects)
        columns = schemas.get(source.db, {}).get(source.name)
        if columns is None:
            raise ModelError(f"{where}: `* exclude` reads {source.sql()}, whose columns are not known")
        return list(columns)
    if isinstance(source, exp.Subquery):
        inner = source.this
        if isinstance(inner, exp.Select) and any(isinstance(e, exp.Star) for e in inner.expressions):
            _expand_stars(inner, schemas, where)
        return list(inner.named_selects)
    raise ModelError(f"{where}: `* exclude` over {source.sql()} is not supported on Spark")


def _expand_stars(select: exp.Select, schemas: Schemas, where: str) -> None:
    columns = _source_columns(select, schemas, where)
    stars = [e for e in select.expressions if isinstance(e, exp.Star)]
    for star in stars:
        drop = {e.name.lower() for e in star.args.get("except_") or []}
        star.replace(exp.Tuple(expressions=[exp.column(c) for c in columns if c.lower() not in drop]))
    select.set(
        "expressions",
        [x for e in select.expressions for x in (e.expressions if isinstance(e, exp.Tuple) else [e])],
    )
