"""The whole-graph job and its daily schedule."""

from __future__ import annotations

import dagster as dg

from ecommerce_assets.resources import Settings

# Everything, checks included: the same selection the UI's "Materialize all" and the CLI use.
warehouse_job = dg.define_asset_job(
    "warehouse_job",
    selection=dg.AssetSelection.all() | dg.AssetSelection.all_asset_checks(),
    description="Materializes the whole graph with all its checks.",
)

checks_job = dg.define_asset_job(
    "checks_job",
    selection=dg.AssetSelection.all_asset_checks(),
    description="Runs only the checks, against the tables already in the DuckDB file.",
)


def daily_schedule(settings: Settings) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="daily_warehouse",
        job=warehouse_job,
        cron_schedule=settings.schedule_cron,
        execution_timezone=settings.schedule_timezone,
        description="Rebuilds the whole graph daily (ECOMMERCE_SCHEDULE_CRON / ECOMMERCE_SCHEDULE_TIMEZONE).",
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
