"""Shared fixtures: real Definitions on a real DuckDB file in a temp directory."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from ecommerce_assets.definitions import build_definitions
from ecommerce_assets.paths import SQL_DIR
from ecommerce_assets.settings import Settings

# The checkout, its bundled raw files and the tests' own fixtures.
ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
FIXTURES = Path(__file__).parent / "fixtures"
SEED_REFERENCE = sorted((FIXTURES / "seed_reference").glob("*.csv"))
# Measured to the run's analysis date here, to the day of the run in the seed.
MOVED_ON_PURPOSE = {"account_age_days", "order_trend_ratio"}


def assert_equals_reference(query, table: str, reference: Path, skip: set[str] = MOVED_ON_PURPOSE) -> None:
    """`table`'s rows equal the reference CSV, in primary-key order; numbers to a relative 1e-9."""
    with reference.open() as f:
        expected = list(csv.DictReader(f))
    columns = list(expected[0])
    got = query(f"select {', '.join(columns)} from {table} order by {columns[0]}")
    assert len(got) == len(expected)
    for want, have in zip(expected, got, strict=True):
        for column, value in zip(columns, have, strict=True):
            if column in skip:
                continue
            if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
                assert math.isclose(float(value), float(want[column]), rel_tol=1e-9), (reference.stem, column, want)
            else:
                assert _as_text(value) == want[column], (reference.stem, column, want)


def _as_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


@dataclass
class Warehouse:
    """A project wired to its own DuckDB file and output directory."""

    settings: Settings
    defs: dg.Definitions

    def run(
        self, job: str = "warehouse_job", run_config: dict | None = None, selection=None
    ) -> dg.ExecuteInProcessResult:
        job_def = self.defs.resolve_job_def(job)
        return job_def.execute_in_process(
            run_config=run_config,
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
            asset_selection=selection,
        )

    def query(self, sql: str, params=None) -> list[tuple]:
        with duckdb.connect(self.settings.duckdb_path, read_only=True) as con:
            return con.execute(sql, params or []).fetchall()

    def scalar(self, sql: str, params=None):
        return self.query(sql, params)[0][0]


def make_warehouse(tmp_path: Path, data_dir: Path | None = None, sql_dir: Path = SQL_DIR, **env: str) -> Warehouse:
    settings = Settings.from_env(
        {
            "ECOMMERCE_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
            "ECOMMERCE_OUTPUT_DIR": str(tmp_path / "output"),
            **({"ECOMMERCE_DATA_DIR": str(data_dir)} if data_dir else {}),
            **env,
        }
    )
    return Warehouse(settings, build_definitions(settings, sql_dir))


@pytest.fixture
def warehouse(tmp_path) -> Warehouse:
    """A fresh, empty warehouse reading the bundled data."""
    return make_warehouse(tmp_path)


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> tuple[Warehouse, dg.ExecuteInProcessResult]:
    """The whole graph materialized once on the bundled data (read-only for tests)."""
    wh = make_warehouse(tmp_path_factory.mktemp("built"))
    result = wh.run()
    return wh, result
