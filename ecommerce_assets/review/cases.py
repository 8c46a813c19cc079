"""Unit tests of models (dbt's unit tests, SQLMesh's tests): cases beside each model in
`sql/<layer>/<model>.tests.yaml`.

A case gives rows for relations the model reads (only the columns that matter: the others are
NULL), optional variables, and the rows it expects (some or all columns, in any order). It runs
the model's real build SQL (its macros, and `@changed(...)` expanded as a full build expands it)
in an in-memory DuckDB where every relation of the project stands as an empty table of its bound
types: no raw files, no warehouse, a few milliseconds a case.

    - name: recency_30_days_scores_5
      vars: {analysis_date: 2024-12-31}
      given:
        stg_customers: [{customer_id: 1}]
        int_customer_order_stats: [{customer_id: 1, orders_count: 1, order_total_sum: 10, last_order_date: 2024-12-01}]
      expect:
        - {customer_id: 1, recency_days: 30, recency_score: 5}
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import yaml
from pydantic import Field, ValidationError

from ecommerce_assets.errors import ModelError
from ecommerce_assets.project.checks import Strict
from ecommerce_assets.project.models import Model
from ecommerce_assets.project.node import Node
from ecommerce_assets.run.duckdb.catalog import describe, empty_project
from ecommerce_assets.run.duckdb.database import quote_identifier

CASES_SUFFIX = ".tests.yaml"
SAMPLE_ROWS = 10
# Doubles are compared to this many decimal places: the last bits of a float sum depend on the order
# DuckDB adds in, and a case states values as a person writes them.
DOUBLE_PLACES = 6


class CaseSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    description: str | None = None
    # analysis_date (YAML date) and run_started_at (YAML timestamp or date); run_started_at defaults
    # to the day after analysis_date, as a run's would be on the day after the data's last order.
    vars: dict[str, dt.date | dt.datetime] = Field(default_factory=dict)
    given: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    expect: list[dict[str, Any]]


@dataclass(frozen=True)
class Case:
    model: Model
    spec: CaseSpec
    path: Path
    line: int

    @property
    def id(self) -> str:
        return f"{self.model.name}::{self.spec.name}"

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class CaseResult:
    case: Case
    missing: list[tuple]  # expected rows the model did not return
    unexpected: list[tuple]  # rows the model returned that were not expected
    columns: list[str]

    @property
    def passed(self) -> bool:
        return not self.missing and not self.unexpected

    def report(self) -> str:
        if self.passed:
            return f"pass  {self.case.id}"
        lines = [f"FAIL  {self.case.id} ({self.case.where})", "      " + " | ".join(["", *self.columns])]
        lines += ["      " + " | ".join(["missing", *map(_show, row)]) for row in self.missing]
        lines += ["      " + " | ".join(["unexpected", *map(_show, row)]) for row in self.unexpected]
        return "\n".join(lines)


def _show(value: Any) -> str:
    return "NULL" if value is None else str(value)


def load_cases(models: Sequence[Model]) -> list[Case]:
    """Every case of every model that has a `<model>.tests.yaml` beside its SQL file."""
    cases = []
    for model in models:
        path = model.path.with_name(model.path.stem + CASES_SUFFIX)
        if path.exists():
            cases += _parse(model, path)
    return cases


def _parse(model: Model, path: Path) -> list[Case]:
    text = path.read_text()
    try:
        entries = yaml.safe_load(text)
        # The node tree gives each case's line: a failure names the file and the line of its case.
        tree = yaml.compose(text)
    except yaml.YAMLError as e:
        raise ModelError(f"{path}: {e}") from e
    if not isinstance(entries, list):
        raise ModelError(f"{path}: a list of cases, each with name, given and expect")
    cases, names = [], set()
    for entry, node in zip(entries, tree.value, strict=True):
        line = node.start_mark.line + 1
        try:
            spec = CaseSpec.model_validate(entry)
        except ValidationError as e:
            first = e.errors()[0]
            raise ModelError(f"{path}:{line}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from e
        if spec.name in names:
            raise ModelError(f"{path}:{line}: case {spec.name} is named twice")
        names.add(spec.name)
        cases.append(Case(model, spec, path, line))
    return cases


class CaseRunner:
    """Runs cases in one in-memory DuckDB of the project's empty tables, each in a transaction that
    is rolled back."""

    def __init__(self, con: duckdb.DuckDBPyConnection, nodes: Sequence[Node], columns: dict[str, list]):
        self.con = con
        self.tables = {n.name: n.table for n in nodes} | {n.table: n.table for n in nodes}
        self.columns = {n.table: dict(columns[n.name]) for n in nodes}

    def run(self, case: Case) -> CaseResult:
        con, spec = self.con, case.spec
        con.execute("begin")
        try:
            self._set_variables(case)
            for relation, rows in spec.given.items():
                table = self.tables.get(relation)
                if table is None:
                    raise ModelError(f"{case.where}: case {spec.name}: given {relation}: no such model or raw table")
                self._insert(case, table, rows, f"given {relation}")
            try:
                con.execute(f"create temp table __actual as\n{case.model.sql}")
            except duckdb.Error as e:
                raise ModelError(f"{case.where}: case {spec.name}: the model failed: {e}") from e
            actual = dict(describe(con, "__actual"))
            columns = list(dict.fromkeys(c for row in spec.expect for c in row))
            unknown = [c for c in columns if c not in actual]
            if unknown:
                raise ModelError(
                    f"{case.where}: case {spec.name}: expect: {case.model.name} has no column {unknown[0]}"
                )
            if not columns:  # `expect: []`: the model returns no rows
                unexpected = con.execute(f"select * from __actual limit {SAMPLE_ROWS}").fetchall()
                return CaseResult(case, [], unexpected, list(actual))
            con.execute(
                f"create temp table __expected ({', '.join(f'{quote_identifier(c)} {actual[c]}' for c in columns)})"
            )
            self._insert(case, "__expected", spec.expect, "expect", {c: actual[c] for c in columns})
            compared = ", ".join(_normalized(c, actual[c]) for c in columns)
            missing = con.execute(
                f"select {compared} from __expected except all select {compared} from __actual limit {SAMPLE_ROWS}"
            ).fetchall()
            unexpected = con.execute(
                f"select {compared} from __actual except all select {compared} from __expected limit {SAMPLE_ROWS}"
            ).fetchall()
            return CaseResult(case, missing, unexpected, columns)
        finally:
            con.execute("rollback")

    def _set_variables(self, case: Case) -> None:
        variables = dict(case.spec.vars)
        analysis_date = variables.get("analysis_date")
        if "run_started_at" not in variables and analysis_date is not None:
            variables["run_started_at"] = dt.datetime.combine(analysis_date, dt.time()) + dt.timedelta(days=1)
        for name, needed in (
            ("analysis_date", case.model.uses_analysis_date),
            ("run_started_at", case.model.uses_run_date),
        ):
            if needed and name not in variables:
                raise ModelError(
                    f"{case.where}: case {case.spec.name}: {case.model.name} reads getvariable('{name}'): "
                    f"give vars: {{{name}: YYYY-MM-DD}}"
                )
        for name, value in variables.items():
            type_ = "date" if name == "analysis_date" else "timestamp"
            self.con.execute(f"set variable {name} = ?::{type_}", [value])

    def _insert(self, case: Case, table: str, rows: list[dict], what: str, types: dict | None = None) -> None:
        types = types if types is not None else self.columns[table]
        columns = list(dict.fromkeys(c for row in rows for c in row))
        for column in columns:
            if column not in types:
                raise ModelError(
                    f"{case.where}: case {case.spec.name}: {what} has no column {column} (it has {', '.join(types)})"
                )
        if not columns:  # rows of no given column: all NULL
            for _ in rows:
                self.con.execute(f"insert into {table} default values")
            return
        values = ", ".join(f"cast(? as {types[c]})" for c in columns)
        statement = f"insert into {table} ({', '.join(quote_identifier(c) for c in columns)}) values ({values})"
        try:
            self.con.executemany(statement, [[row.get(c) for c in columns] for row in rows])
        except duckdb.Error as e:
            raise ModelError(f"{case.where}: case {case.spec.name}: {what}: {e}") from e


def _normalized(column: str, type_: str) -> str:
    quoted = quote_identifier(column)
    return f"round({quoted}, {DOUBLE_PLACES})" if type_ in ("DOUBLE", "FLOAT") else quoted


def run_cases(nodes: Sequence[Node], macros: Sequence[str], cases: Sequence[Case]) -> Iterator[CaseResult]:
    """The results of `cases`, in order; `nodes` is the whole project, in dependency order."""
    with empty_project(nodes, macros) as (con, columns):
        runner = CaseRunner(con, nodes, columns)
        for case in cases:
            yield runner.run(case)
