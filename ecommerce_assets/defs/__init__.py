"""The Dagster glue: models -> asset specs, engine events -> results, resources, jobs, schedules, alerts."""
