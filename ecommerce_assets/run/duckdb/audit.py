"""The checks executed: one statement counts the failing rows of all of a model's checks, and a
check that fails is run once more for a sample of its rows (declarations: project/checks.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from ecommerce_assets.project.checks import CheckDecl
from ecommerce_assets.run.adapter import SAMPLE_ROWS, CheckOutcome


def screen(con, table: str, checks: list[CheckDecl], count_sql: Mapping[str, str]) -> dict[str, int]:
    """One statement for all of a model's checks: check name -> failing rows, 0 when it passes.

    The kinds with a `screen` aggregate share one scan of `table`; every other check is counted
    by its `failing_count_sql` as a scalar subquery of the same statement.
    """
    if not checks:
        return {}
    aggregates = [c for c in checks if c.screen]
    counted = [c for c in checks if not c.screen]
    columns = [f'{c.screen} as "{c.name}"' for c in aggregates]
    columns += [f'({count_sql[c.name]}) as "{c.name}"' for c in counted]
    row = con.execute("select " + ", ".join(columns) + (f" from {table}" if aggregates else "")).fetchone()
    return {c.name: value for c, value in zip([*aggregates, *counted], row, strict=True)}


def failing_rows(con, sql: str) -> CheckOutcome:
    """Run a failing-rows query once: the count and a sample come from the same scan."""
    cursor = con.execute(f"select *, count(*) over () as __failing from ({sql}) limit {SAMPLE_ROWS}")
    columns = [d[0] for d in cursor.description][:-1]
    rows = cursor.fetchall()
    failing = rows[0][-1] if rows else 0
    return CheckOutcome(failing, columns, [r[:-1] for r in rows], sql)
