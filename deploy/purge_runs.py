"""Run retention: deletes finished runs older than N days, with their event logs, from the instance.

Dagster purges old schedule and sensor ticks itself (`retention:` in dagster.yaml) but keeps every
run. Usage, with the services' environment (DAGSTER_HOME, DAGSTER_PG_*):

    python purge_runs.py --days 90
"""

from __future__ import annotations

import argparse
import datetime as dt

import dagster as dg

FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=90, help="keep the runs created in the last DAYS days (default 90)")
    days = parser.parse_args(argv).days
    cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)
    deleted = 0
    with dg.DagsterInstance.get() as instance:
        while records := instance.get_run_records(dg.RunsFilter(statuses=FINISHED, created_before=cutoff), limit=100):
            for record in records:
                instance.delete_run(record.dagster_run.run_id)
            deleted += len(records)
    print(f"deleted {deleted} finished run(s) created before {cutoff:%Y-%m-%d %H:%M} UTC")


if __name__ == "__main__":
    main()
