"""Check kinds: each declaration in a model's header becomes a query returning the failing rows.

Column checks (`unique`, `not_null`, `relationships`, `accepted_values`) are written under a
column; model-level `checks:` entries give a name and a `sql` query that returns the bad rows
(the seed's singular tests). One generic implementation per kind lives here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

SAMPLE_ROWS = 10

# Key integrity blocks the layers below it; business rules only warn (see README).
DEFAULT_SEVERITY = {
    "unique": "error",
    "not_null": "error",
    "relationships": "error",
    "one_row_per": "error",
    "accepted_values": "warn",
    "sql": "warn",
}


class CheckDeclarationError(ValueError):
    pass


@dataclass(frozen=True)
class CheckDecl:
    model_table: str
    name: str
    kind: str
    severity: str
    description: str
    column: str | None = None
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def blocking(self) -> bool:
        return self.severity == "error"

    @property
    def screen(self) -> str | None:
        """An aggregate over the model's table that is 0 exactly when the check passes.

        The cheap kinds of one model share one scan this way; the failing-rows query runs only
        for the checks that fail.
        """
        column = self.column
        if self.kind == "not_null":
            return f"count(*) filter (where {column} is null)"
        if self.kind == "unique":
            return f"count({column}) - count(distinct {column})"
        if self.kind == "accepted_values":
            values = ", ".join(_literal(v) for v in self.params["values"])
            return f"count(*) filter (where {column} is not null and {column} not in ({values}))"
        return None

    def failing_rows_sql(self, table_of: Callable[[str], str]) -> str:
        """The query whose rows are the failures; `table_of` maps a model name to its table."""
        return _SQL[self.kind](self.model_table, self.column, self.params, table_of).strip()

    def failing_count_sql(self, table_of: Callable[[str], str]) -> str:
        """A query that counts the failures without fetching them: only the compared columns are read.

        A relationship is counted with a join, which DuckDB runs two to three times faster than
        the NOT EXISTS that returns the failing rows.
        """
        if self.kind == "relationships":
            parent, field_ = table_of(self.params["to"]), self.params.get("field", self.column)
            return (
                f"select count(*) from {self.model_table} as child left join {parent} as parent"
                f" on parent.{field_} = child.{self.column} where parent.{field_} is null and child.{self.column} is not null"
            )
        return f"select count(*) from ({self.failing_rows_sql(table_of)})"


def _unique(table, column, params, table_of):
    return f"""
select {column}, count(*) as occurrences
from {table}
where {column} is not null
group by {column}
having count(*) > 1"""


def _not_null(table, column, params, table_of):
    return f"select * from {table} where {column} is null"


def _relationships(table, column, params, table_of):
    parent = table_of(params["to"])
    field_ = params.get("field", column)
    return f"""
select child.*
from {table} as child
where child.{column} is not null
  and not exists (select 1 from {parent} as parent where parent.{field_} = child.{column})"""


def _one_row_per(table, column, params, table_of):
    parent = table_of(params["to"])
    field_ = params.get("field", column)
    return f"""
select coalesce(parent.{field_}, child.{column}) as {column},
    count(parent.{field_}) as rows_in_parent,
    count(child.{column}) as rows_here
from {parent} as parent
full join {table} as child on child.{column} = parent.{field_}
group by all
having count(child.{column}) <> 1 or count(parent.{field_}) <> 1"""


def _accepted_values(table, column, params, table_of):
    values = ", ".join(_literal(v) for v in params["values"])
    return f"select * from {table} where {column} is not null and {column} not in ({values})"


def _sql(table, column, params, table_of):
    return params["sql"]


_SQL = {
    "unique": _unique,
    "not_null": _not_null,
    "relationships": _relationships,
    "one_row_per": _one_row_per,
    "accepted_values": _accepted_values,
    "sql": _sql,
}


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def _describe(kind: str, column: str | None, params: dict) -> str:
    if kind == "unique":
        return f"{column} is unique."
    if kind == "not_null":
        return f"{column} is never NULL."
    if kind == "relationships":
        return f"Every {column} exists in {params['to']}.{params.get('field', column)}."
    if kind == "one_row_per":
        return f"Exactly one row for every {params.get('field', column)} of {params['to']}, and no other rows."
    if kind == "accepted_values":
        return f"{column} is one of {', '.join(map(str, params['values']))}."
    return ""


def parse_checks(model_table: str, columns: dict, model_checks: list, where: str) -> tuple[CheckDecl, ...]:
    """Check declarations of one model header. `where` names the file for error messages."""
    decls: list[CheckDecl] = []
    for column, spec in columns.items():
        for entry in (spec or {}).get("checks", []):
            kind, params = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
            params = dict(params or {})
            if kind not in _SQL or kind == "sql":
                raise CheckDeclarationError(
                    f"{where}: column {column}: unknown check kind {kind!r} "
                    f"(use one of unique, not_null, relationships, one_row_per, accepted_values)"
                )
            required = {"relationships": "to", "one_row_per": "to", "accepted_values": "values"}.get(kind)
            if required and required not in params:
                raise CheckDeclarationError(f"{where}: column {column}: {kind} needs '{required}'")
            decls.append(_decl(model_table, f"{kind}_{column}", kind, column, params, where))
    for entry in model_checks:
        if not isinstance(entry, dict) or "name" not in entry or "sql" not in entry:
            raise CheckDeclarationError(f"{where}: each entry of checks needs a name and a sql query")
        decls.append(_decl(model_table, entry["name"], "sql", None, dict(entry), where))
    names = [d.name for d in decls]
    duplicated = {n for n in names if names.count(n) > 1}
    if duplicated:
        raise CheckDeclarationError(f"{where}: check names used twice: {sorted(duplicated)}")
    return tuple(decls)


def _decl(model_table, name, kind, column, params, where) -> CheckDecl:
    severity = params.pop("severity", DEFAULT_SEVERITY[kind])
    if severity not in ("error", "warn"):
        raise CheckDeclarationError(f"{where}: check {name}: severity must be error or warn")
    description = params.pop("description", None) or _describe(kind, column, params)
    return CheckDecl(model_table, name, kind, severity, description, column, params)


@dataclass(frozen=True)
class CheckOutcome:
    failing: int
    columns: list[str]
    sample: list[tuple]
    sql: str

    @property
    def passed(self) -> bool:
        return self.failing == 0


def screen(con, table: str, checks: list[CheckDecl], count_sql: Mapping[str, str]) -> dict[str, int]:
    """One statement for all of a model's checks: check name -> failing rows, 0 when it passes.

    The kinds with a `screen` aggregate share one scan of `table`; every other check is counted
    by its `failing_count_sql` as a scalar subquery of the same statement.
    """
    if not checks:
        return {}
    aggregates = [c for c in checks if c.screen]
    counted = [c for c in checks if not c.screen]
    columns = [f"{c.screen} as \"{c.name}\"" for c in aggregates]
    columns += [f"({count_sql[c.name]}) as \"{c.name}\"" for c in counted]
    row = con.execute("select " + ", ".join(columns) + (f" from {table}" if aggregates else "")).fetchone()
    return {c.name: value for c, value in zip([*aggregates, *counted], row)}


def evaluate(con, sql: str) -> CheckOutcome:
    """Run a failing-rows query once: the count and a sample come from the same scan."""
    cursor = con.execute(
        f"select *, count(*) over () as __failing from ({sql}) limit {SAMPLE_ROWS}"
    )
    columns = [d[0] for d in cursor.description][:-1]
    rows = cursor.fetchall()
    failing = rows[0][-1] if rows else 0
    return CheckOutcome(failing, columns, [r[:-1] for r in rows], sql)
