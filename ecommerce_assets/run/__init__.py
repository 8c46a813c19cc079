"""One run, no Dagster: plan, build, audit, incremental keys, the logs, publish, the readers' copy."""
