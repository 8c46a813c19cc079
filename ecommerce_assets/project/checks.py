"""Check kinds: each declaration in a model's header becomes a query returning the failing rows.

Column checks (`unique`, `not_null`, `relationships`, `accepted_values`) are written under a
column; model-level `checks:` entries give a name and a `sql` query that returns the bad rows
(the seed's singular tests). One generic implementation per kind lives here, next to the
pydantic models that validate the declarations. Running them: run/duckdb/audit.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

# Key integrity blocks the layers below it; business rules only warn (see README).
DEFAULT_SEVERITY = {
    "unique": "error",
    "not_null": "error",
    "relationships": "error",
    "one_row_per": "error",
    "accepted_values": "warn",
    "sql": "warn",
    "row_count_drop": "warn",
    "equals_full_rebuild": "error",
}


@dataclass(frozen=True)
class CheckDecl:
    model_table: str
    name: str
    kind: str
    severity: str
    description: str
    column: str | None = None
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    # For a `sql` check: the 1-based line of the model file its query starts on (None otherwise).
    sql_line: int | None = None

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


def _row_count_drop(table, column, params, table_of):
    # published_row_count() (run/duckdb/logs.py) reads the publish log; the literal keeps the published
    # name while the run reads its own build through `table`.
    return f"""
select last_published_rows, row_count
from (select count(*) as row_count, published_row_count('{table}') as last_published_rows from {table})
where row_count < last_published_rows * (1 - getvariable('max_row_drop'))
"""


# The layers whose row count is compared with the last publish (row_count_drop_check).
VOLUME_CHECKED_LAYERS = ("raw", "marts")


def row_count_drop_check(model_table: str) -> CheckDecl:
    """The check every raw table and mart carries (see `VOLUME_CHECKED_LAYERS`)."""
    return _decl(model_table, "no_sudden_row_drop", "row_count_drop", None, {})


def _equals_full_rebuild(table, column, params, table_of):
    # Rows are compared by hash and counted per key, so a missing, extra or altered row shows with
    # its key. The maintained tables hold no doubles (money stays decimal), so hashes are exact.
    exclude = f" exclude ({', '.join(params['exclude'])})" if params["exclude"] else ""
    return f"""
with maintained as (
    select {column} as key, hash(m) as row_hash, count(*) as row_count
    from (select *{exclude} from {table} where {params["where"]}) as m
    group by all
),
rebuilt as (
    select {column} as key, hash(r) as row_hash, count(*) as row_count
    from (select *{exclude} from (
{params["sql"]}
    )) as r
    group by all
)
select coalesce(m.key, r.key) as {column}, m.row_count as maintained_rows, r.row_count as rebuilt_rows
from maintained as m
full join rebuilt as r on m.key is not distinct from r.key and m.row_hash = r.row_hash
where m.row_count is distinct from r.row_count"""


def equals_full_rebuild_check(table: str, key: str, sql: str, where: str, exclude: list[str]) -> CheckDecl:
    """A delete+insert model's rows over the compared keys equal its query's from scratch."""
    params = {"sql": sql, "where": where, "exclude": exclude}
    return _decl(table, "equals_full_rebuild", "equals_full_rebuild", key, params)


_SQL = {
    "unique": _unique,
    "not_null": _not_null,
    "relationships": _relationships,
    "one_row_per": _one_row_per,
    "accepted_values": _accepted_values,
    "sql": _sql,
    "row_count_drop": _row_count_drop,
    "equals_full_rebuild": _equals_full_rebuild,
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
    if kind == "equals_full_rebuild":
        return (
            "The rows maintained from the run's changes equal what the model's SQL gives from scratch, "
            "over the keys that changed and a rotating slice of all customers (ECOMMERCE_VERIFY_SLICES)."
        )
    if kind == "row_count_drop":
        return (
            "The row count fell by no more than ECOMMERCE_MAX_ROW_DROP percent (default 50) against the last "
            "published run: an export that came empty or cut short shows here, though no key is broken."
        )
    return ""


# What a header may declare, validated by pydantic: `models.Header` holds these. They only
# validate; `column_check` and `sql_check` turn them into `CheckDecl`s.
COLUMN_CHECK_KINDS = ("unique", "not_null", "relationships", "one_row_per", "accepted_values")


class Strict(BaseModel):
    """No unknown keys, no type coercion: a header says exactly what it means or fails."""

    model_config = ConfigDict(extra="forbid", strict=True)


class CheckParams(Strict):
    severity: Literal["error", "warn"] | None = None
    description: str | None = None


class ReferenceParams(CheckParams):
    """`relationships` and `one_row_per`: the model `to` and its column `field` (default: the same name)."""

    to: str
    field: str | None = None


def _scalar(value: Any) -> Any:
    if not isinstance(value, (str, int, float, bool)):
        raise PydanticCustomError(
            "scalar", "a value must be a string, number or boolean, not {value}", {"value": repr(value)}
        )
    return value


class AcceptedValuesParams(CheckParams):
    values: list[Annotated[Any, AfterValidator(_scalar)]] = Field(min_length=1)


class ColumnCheck(Strict):
    """One entry of a column's `checks:`, `unique` or `{relationships: {to: stg_customers}}`."""

    unique: CheckParams | None = None
    not_null: CheckParams | None = None
    relationships: ReferenceParams | None = None
    one_row_per: ReferenceParams | None = None
    accepted_values: AcceptedValuesParams | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_kind(cls, entry: Any) -> Any:
        if isinstance(entry, str):
            kind, params = entry, {}
        elif isinstance(entry, dict) and len(entry) == 1:
            ((kind, params),) = entry.items()
        else:
            raise PydanticCustomError(
                "check_entry",
                "a column check is a kind name or a one-key mapping kind -> parameters, not {entry}",
                {"entry": repr(entry)},
            )
        if kind not in COLUMN_CHECK_KINDS:
            raise PydanticCustomError(
                "unknown_check_kind",
                "unknown check kind {kind} (use one of {kinds})",
                {"kind": repr(kind), "kinds": ", ".join(COLUMN_CHECK_KINDS)},
            )
        return {kind: {} if params is None else params}

    @property
    def kind(self) -> str:
        return next(k for k in COLUMN_CHECK_KINDS if getattr(self, k) is not None)

    @property
    def params(self) -> dict[str, Any]:
        return getattr(self, self.kind).model_dump(exclude_none=True)


class SqlCheck(Strict):
    """A model-level entry of `checks:`: a query returning the rows that break a rule."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    sql: str
    severity: Literal["error", "warn"] | None = None
    description: str | None = None


def column_check(model_table: str, column: str, entry: ColumnCheck) -> CheckDecl:
    """The declaration of a column check, named `<kind>_<column>`."""
    return _decl(model_table, f"{entry.kind}_{column}", entry.kind, column, entry.params)


def sql_check(model_table: str, spec: SqlCheck, sql: str, sql_line: int | None) -> CheckDecl:
    """The declaration of a model-level check; `sql` is its query as it runs, starting on `sql_line`."""
    params = spec.model_dump(exclude_none=True) | {"sql": sql}
    params.pop("name")
    return _decl(model_table, spec.name, "sql", None, params, sql_line)


def _decl(model_table, name, kind, column, params, sql_line=None) -> CheckDecl:
    severity = params.pop("severity", DEFAULT_SEVERITY[kind])
    description = params.pop("description", None) or _describe(kind, column, params)
    return CheckDecl(model_table, name, kind, severity, description, column, params, sql_line)
