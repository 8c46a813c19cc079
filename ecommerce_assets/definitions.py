"""The code location: `ecommerce_assets.definitions:defs`."""

from __future__ import annotations

import gc
from pathlib import Path

import dagster as dg

from ecommerce_assets.analyses import charts as analyses
from ecommerce_assets.defs import alerts
from ecommerce_assets.defs.factory import build_warehouse
from ecommerce_assets.defs.resources import DuckDBWarehouse, SparkWarehouse
from ecommerce_assets.defs.schedules import (
    checks_job,
    churn_training_job,
    daily_schedule,
    warehouse_job,
    weekly_churn_training_schedule,
)
from ecommerce_assets.ml.churn import assets as churn
from ecommerce_assets.paths import SQL_DIR
from ecommerce_assets.project.models import Model, load_macros, load_models, resolve_deps
from ecommerce_assets.project.sources import RAW_TABLES
from ecommerce_assets.settings import Settings


def load_project(sql_dir: Path = SQL_DIR) -> tuple[list[Model], list[str]]:
    """The models of `sql_dir`, resolved and in dependency order, and its macros."""
    return resolve_deps(load_models(sql_dir), {r.name: "raw" for r in RAW_TABLES}), load_macros(sql_dir)


def build_definitions(settings: Settings | None = None, sql_dir: Path = SQL_DIR) -> dg.Definitions:
    settings = settings or Settings.from_env()
    models, macros = load_project(sql_dir)
    if settings.engine == "spark":
        # The SQL models and their checks only: the charts and the churn model read DuckDB (README,
        # 'Beyond one machine').
        warehouse, whole_graph = build_warehouse(models, settings, macros=macros), warehouse_job(())
        return dg.Definitions(
            assets=[warehouse],
            jobs=[whole_graph, checks_job],
            schedules=[daily_schedule(settings, whole_graph)],
            sensors=alerts.SENSORS,
            resources={"spark": SparkWarehouse.from_settings(settings)},
            # One process runs a whole run: one Spark session per process, one metastore user at a time.
            executor=dg.in_process_executor,
        )
    warehouse = build_warehouse(models, settings, after_build=analyses.after_build(models), macros=macros)
    whole_graph = warehouse_job(churn.TRAINING_ASSETS)
    churn_defs = churn.build_churn(settings.output_dir, models, settings.freshness_hours)
    training = churn_training_job(churn.TRAINING_ASSETS)
    return dg.Definitions(
        assets=[warehouse, *churn_defs["assets"]],
        asset_checks=churn_defs["asset_checks"],
        jobs=[whole_graph, checks_job, training],
        schedules=[daily_schedule(settings, whole_graph), weekly_churn_training_schedule(settings, training)],
        sensors=alerts.SENSORS,
        resources={"duckdb": DuckDBWarehouse.from_settings(settings)},
        # One process runs a whole run: DuckDB allows one writer per file.
        executor=dg.in_process_executor,
    )


defs = build_definitions()

# Loading Dagster and these definitions leaves ~150,000 objects that live as long as the process.
# Python's collector rescans every one of them on each full collection, and a run's event writes
# trigger many: freezing them saves ~0.5-0.8 s per CLI run on the bundled data and ~1.2 s at 1M
# customers (README, Performance). The collect first keeps the few hundred garbage objects of the
# imports out of the frozen set.
gc.collect()
gc.freeze()
