"""The DuckDB warehouse: build, audit, incremental keys, the logs, the one-transaction publish and
the readers' copy, and the catalog DuckDB binds from the project's SQL."""
