"""One run, no Dagster: the plan and its order, skips and publish rule (engine.py), on a warehouse
behind the seam of warehouse.py: DuckDB's (duckdb/) or Spark's (spark/)."""
