"""Column-level lineage read from each model's SQL, one hop, as dagster-dbt derives
`dagster/column_lineage` from the compiled SQL with sqlglot.

Each model's statement is qualified by sqlglot's optimizer against the columns the warehouse
reports (`schemas`): stars, `exclude`/`replace`, unqualified columns and aliases are resolved,
every table is named `layer.name`. One walk over the scopes of that tree then follows each output
column through CTEs, derived tables, unions and subqueries down to the columns of the tables the
model reads (its `deps`). A column depends on every column its expression mentions: function
arguments (unknown functions and macros such as `initcap(x)` included), `case` branches,
aggregate arguments and filters, a window's `partition by` / `order by`, and the projections of a
scalar subquery. Columns read only by `where`, `join ... on`, `group by` or `having` do not count,
as in `sqlglot.lineage` and dagster-dbt. Lineage further up (to the raw columns) is the chain of
these one-hop maps, which is how Dagster's UI shows it.

Analysing a model never raises: a model sqlglot cannot analyse has its columns mapped to [] and a
line in `ColumnLineage.problems` (`column_lineage` turns those into `LineageWarning`s).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope
from sqlglot.schema import MappingSchema

from ecommerce_assets.errors import EcommerceAssetsError
from ecommerce_assets.project.models import Model
from ecommerce_assets.project.sources import SCHEMA as RAW_SCHEMA

__all__ = ["ColumnLineage", "LineageWarning", "analyse_lineage", "column_lineage"]

DIALECT = "duckdb"

# A model's lineage: output column -> the (upstream node, upstream column) pairs it is computed from.
ModelLineage = dict[str, list[tuple[str, str]]]

# A scope's columns in order: (name, the (upstream node, upstream column) pairs it is computed from).
_Outputs = list[tuple[str, set[tuple[str, str]]]]

# The name sqlglot gives a projection without an alias (DuckDB names it after the expression).
_GENERATED_NAME = re.compile(r"_col_\d+")


class LineageWarning(UserWarning):
    """A model whose column lineage is incomplete: some or all of its columns map to []."""


@dataclass(frozen=True)
class ColumnLineage:
    # model -> output column -> [(upstream node, upstream column)], every model and column present.
    columns: dict[str, ModelLineage]
    # model -> why some of its columns have no (or an incomplete) lineage; absent when complete.
    problems: dict[str, list[str]] = field(default_factory=dict)


def column_lineage(
    models: Sequence[Model], schemas: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, list[tuple[str, str]]]]:
    """For every model, output column -> the (upstream node, upstream column) pairs it is computed
    from, one hop: only columns of the tables the model's SQL reads (its deps), in the order of
    those tables' names and columns.

    `schemas` maps a node's name (raw table or model) to its column names in order. A model's
    columns are those `schemas` gives it (the SQL's projections if it has none). An empty list is
    a column computed from no upstream column (a literal, `getvariable(...)`, `count(*)`), or one
    of a model sqlglot could not analyse; the latter also emits a `LineageWarning`. Never raises.
    """
    result = analyse_lineage(models, schemas)
    for model, problems in result.problems.items():
        for problem in problems:
            warnings.warn(f"column lineage of {model}: {problem}", LineageWarning, stacklevel=2)
    return result.columns


def analyse_lineage(models: Sequence[Model], schemas: Mapping[str, Sequence[str]]) -> ColumnLineage:
    """`column_lineage`, with the reasons a model's lineage is incomplete instead of warnings."""
    # Nodes and their columns by lower-case name: sqlglot normalizes DuckDB's identifiers to it.
    node_of = {name.lower(): name for name in schemas}
    columns_of = {name: {c.lower(): c for c in cols} for name, cols in schemas.items()}
    position = {name: {c: i for i, c in enumerate(cols)} for name, cols in schemas.items()}
    try:
        schema: MappingSchema | None = _schema(models, schemas)
        schema_error = ""
    except Exception as e:  # no failure of the analysis may break the definitions' load
        schema, schema_error = None, f"sqlglot rejects the schemas: {type(e).__name__}: {e}"

    lineage: dict[str, ModelLineage] = {}
    problems: dict[str, list[str]] = {}
    for model in models:
        notes: list[str] = []
        known = list(schemas.get(model.name, ()))
        try:
            if schema is None:
                raise _Unanalysable(schema_error)
            named = _name_outputs(_outputs(model, schema, node_of, columns_of, notes), known, notes)
            lineage[model.name] = {
                column: sorted(deps, key=lambda d: (d[0], position.get(d[0], {}).get(d[1], 0), d[1]))
                for column, deps in named.items()
            }
        except Exception as e:  # any failure here leaves this model without lineage, nothing more
            reason = str(e) if isinstance(e, _Unanalysable) else f"{type(e).__name__}: {e}"
            notes.append(f"sqlglot cannot analyse {model.path}, no lineage for its columns: {reason}")
            lineage[model.name] = {c: [] for c in known}
        if notes:
            problems[model.name] = list(dict.fromkeys(notes))
    return ColumnLineage(lineage, problems)


class _Unanalysable(EcommerceAssetsError):
    pass


def _schema(models: Sequence[Model], schemas: Mapping[str, Sequence[str]]) -> MappingSchema:
    """Every node as `layer.name` (raw tables in schema raw); column types do not matter here."""
    layer_of = {m.name: m.layer for m in models}
    mapping: dict[str, dict[str, dict[str, str]]] = {}
    for name, cols in schemas.items():
        mapping.setdefault(layer_of.get(name, RAW_SCHEMA), {})[name] = dict.fromkeys(cols, "unknown")
    return MappingSchema(mapping, dialect=DIALECT)


def _outputs(
    model: Model,
    schema: MappingSchema,
    node_of: Mapping[str, str],
    columns_of: Mapping[str, Mapping[str, str]],
    notes: list[str],
) -> _Outputs:
    """The model's projections in order: (sqlglot's name, its upstream (node, column) pairs)."""
    missing = [dep for dep in model.deps if dep not in columns_of]
    if missing:
        notes.append(f"no columns known for {', '.join(missing)}")
    tree = sqlglot.parse_one(model.sql, read=DIALECT)
    tree = qualify(
        tree,
        schema=schema,
        dialect=DIALECT,
        validate_qualify_columns=False,  # unresolved columns are reported by the walk instead
        quote_identifiers=False,
        identify=False,
    )
    root = build_scope(tree)
    if root is None:
        notes.append("the SQL is no query")
        return []
    walker = _Walker(root, set(model.deps), node_of, columns_of, notes)
    return walker.outputs(root)


class _Walker:
    """Resolves projections of qualified scopes to the columns of the tables they read."""

    def __init__(
        self,
        root: Scope,
        deps: set[str],
        node_of: Mapping[str, str],
        columns_of: Mapping[str, Mapping[str, str]],
        notes: list[str],
    ):
        self.scope_of = {id(s.expression): s for s in root.traverse()}
        self.deps = deps
        self.node_of = node_of
        self.columns_of = columns_of
        self.notes = notes
        self.memo: dict[int, _Outputs | None] = {}

    def outputs(self, scope: Scope) -> _Outputs | None:
        """The scope's columns in order and what each is computed from; None for a source with
        no upstream columns (`values`, a table function)."""
        key = id(scope)
        if key in self.memo:
            return self.memo[key]
        self.memo[key] = []  # a recursive CTE reading itself adds nothing more
        expression = scope.expression
        result: _Outputs | None
        if isinstance(expression, exp.SetOperation) and len(scope.set_operation_scopes) == 2:
            left, right = (self.outputs(s) or [] for s in scope.set_operation_scopes)
            if expression.args.get("by_name"):  # union by name: columns matched by name
                merged: dict[str, set[tuple[str, str]]] = {}
                for name, deps in [*left, *right]:
                    merged.setdefault(name, set()).update(deps)
                result = list(merged.items())
            else:
                if len(left) != len(right):
                    self.notes.append("a set operation's sides have different numbers of columns")
                result = [(name, deps | other) for (name, deps), (_, other) in zip(left, right, strict=False)]
                result += left[len(right) :]
        elif isinstance(expression, exp.Select):
            result = [(p.alias_or_name, self.expression_deps(p, scope)) for p in expression.selects]
            if any(isinstance(p.unalias(), exp.Star) or _is_columns_call(p.unalias()) for p in expression.selects):
                self.notes.append("a star or columns(...) that sqlglot cannot expand")
        elif isinstance(expression, (exp.Values, exp.UDTF)):
            result = None
        else:
            self.notes.append(f"cannot follow columns through {type(expression).__name__}")
            result = None
        self.memo[key] = result
        return result

    def expression_deps(self, expression: exp.Expression, scope: Scope) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        stack = list(expression.iter_expressions())
        while stack:
            node = stack.pop()
            if isinstance(node, exp.Column):
                found |= self.column_deps(node, scope)
            elif isinstance(node, (exp.Select, exp.SetOperation)):  # a subquery: its projections, in its own scope
                sub = self.scope_of.get(id(node))
                if sub is None:
                    self.notes.append(f"cannot follow the subquery {node.sql(DIALECT)[:80]}")
                else:
                    for _, deps in self.outputs(sub) or []:
                        found |= deps
            else:
                stack.extend(node.iter_expressions())
        return found

    def column_deps(self, column: exp.Column, scope: Scope) -> set[tuple[str, str]]:
        table, name = column.table, column.name
        if not table:
            if not _is_lambda_parameter(column):
                self.notes.append(f"cannot tell which table column {name} comes from")
            return set()
        owner: Scope | None = scope
        while owner is not None and table not in owner.sources:
            owner = owner.parent
        if owner is None:
            self.notes.append(f"unknown table alias {table} (column {table}.{name})")
            return set()
        source = owner.sources[table]
        if isinstance(source, Scope):
            # A recursive CTE's name stands for a scope of its first branch, not itself traversed.
            source = self.scope_of.get(id(source.expression), source)
            outputs = self.outputs(source)
            if outputs is None:
                return set()
            if name == "*":
                return set().union(*(deps for _, deps in outputs))
            for output, deps in outputs:
                if output == name:
                    return deps
            self.notes.append(f"{table} has no column {name}")
            return set()
        if isinstance(source, exp.Table):
            node = self.node_of.get(source.name.lower())
            if node is None or node not in self.deps:
                return set()  # a table function (read_csv, range, unnest): no upstream node
            columns = self.columns_of[node]
            if name == "*":
                return {(node, c) for c in columns.values()}
            if name.lower() not in columns:
                self.notes.append(f"{node} has no column {name}")
                return set()
            return {(node, columns[name.lower()])}
        return set()


def _is_columns_call(expression: exp.Expression) -> bool:
    """DuckDB's `columns('regex')` / `columns(*)`, which stands for several columns."""
    return isinstance(expression, exp.Columns) or (
        isinstance(expression, exp.Anonymous) and expression.name.lower() == "columns"
    )


def _is_lambda_parameter(column: exp.Column) -> bool:
    lam = column.find_ancestor(exp.Lambda)
    while lam is not None:
        if any(p.name == column.name for p in lam.expressions):
            return True
        lam = lam.find_ancestor(exp.Lambda)
    return False


def _name_outputs(outputs: _Outputs, known: list[str], notes: list[str]) -> dict[str, set[tuple[str, str]]]:
    """The projections under the column names the warehouse gives them (`known`, if any): by
    position when the counts agree (DuckDB names an unaliased `count(*)` `count_star()`, sqlglot
    `_col_0`), else by name."""
    if not known:
        named: dict[str, set[tuple[str, str]]] = {}
        for name, deps in outputs:
            named.setdefault(name, set()).update(deps)
        return named
    if len(known) == len(outputs):
        renamed = [
            (want, got)
            for want, (got, _) in zip(known, outputs, strict=True)
            if want.lower() != got.lower() and not _GENERATED_NAME.fullmatch(got)
        ]
        if renamed:
            notes.append(
                "the SQL's columns differ from the table's, matched by position: "
                + ", ".join(f"{got} -> {want}" for want, got in renamed)
            )
        return {want: set(deps) for want, (_, deps) in zip(known, outputs, strict=True)}
    notes.append(f"the SQL has {len(outputs)} columns and the table {len(known)}: matched by name")
    by_name: dict[str, set[tuple[str, str]]] = {}
    for name, deps in outputs:
        by_name.setdefault(name.lower(), set()).update(deps)
    unmatched = [c for c in known if c.lower() not in by_name]
    if unmatched:
        notes.append(f"no lineage for {', '.join(unmatched)}")
    return {c: set(by_name.get(c.lower(), ())) for c in known}
