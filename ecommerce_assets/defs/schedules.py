"""The whole-graph job, the checks job, the churn model's training job, and their schedules.

The training assets are the churn package's (ml/churn); the code location passes their names in,
so this module, like the rest of defs/, needs nothing of the packages built on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from ecommerce_assets.settings import Settings


def warehouse_job(training_assets: Sequence[str]) -> dg.UnresolvedAssetJobDefinition:
    # Everything but the churn model's training, checks included: what the CLI builds and the daily
    # schedule runs. Training needs no daily refresh (churn_training_job, weekly); scoring is daily.
    return dg.define_asset_job(
        "warehouse_job",
        selection=(dg.AssetSelection.all() | dg.AssetSelection.all_asset_checks())
        - dg.AssetSelection.assets(*training_assets),
        description="Materializes the whole graph with all its checks, except the churn model's weekly training.",
    )


checks_job = dg.define_asset_job(
    "checks_job",
    selection=dg.AssetSelection.all_asset_checks(),
    description="Runs only the checks, against the tables already in the DuckDB file.",
)


def daily_schedule(settings: Settings, job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="daily_warehouse",
        job=job,
        cron_schedule=settings.schedule_cron,
        execution_timezone=settings.schedule_timezone,
        description="Rebuilds the whole graph daily (ECOMMERCE_SCHEDULE_CRON / ECOMMERCE_SCHEDULE_TIMEZONE; "
        "on by default when ECOMMERCE_SCHEDULE_DEFAULT_STATUS=running).",
        default_status=dg.DefaultScheduleStatus(settings.schedule_default_status.upper()),
    )


def churn_training_job(training_assets: Sequence[str]) -> dg.UnresolvedAssetJobDefinition:
    # Training needs no daily refresh: its data changes when a month's label window completes.
    return dg.define_asset_job(
        "churn_training_job",
        selection=dg.AssetSelection.assets(*training_assets) | dg.AssetSelection.checks_for_assets(*training_assets),
        description="Builds the point-in-time churn training data, trains and evaluates the churn model.",
    )


def weekly_churn_training_schedule(settings: Settings, job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="weekly_churn_training",
        job=job,
        cron_schedule="0 3 * * 0",
        execution_timezone=settings.schedule_timezone,
        description="Retrains the churn model on Sundays at 03:00, before the daily run scores with it.",
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
