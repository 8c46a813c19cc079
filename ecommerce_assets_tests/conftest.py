"""Shared fixtures: real Definitions on a real DuckDB file in a temp directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from ecommerce_assets.definitions import build_definitions
from ecommerce_assets.resources import Settings

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass
class Warehouse:
    """A project wired to its own DuckDB file and output directory."""

    settings: Settings
    defs: dg.Definitions

    def run(self, job: str = "warehouse_job", run_config: dict | None = None, selection=None) -> dg.ExecuteInProcessResult:
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


def make_warehouse(tmp_path: Path, data_dir: Path | None = None, **env: str) -> Warehouse:
    settings = Settings.from_env(
        {
            "ECOMMERCE_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
            "ECOMMERCE_OUTPUT_DIR": str(tmp_path / "output"),
            **({"ECOMMERCE_DATA_DIR": str(data_dir)} if data_dir else {}),
            **env,
        }
    )
    return Warehouse(settings, build_definitions(settings))


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
