"""Benchmarks: the pipeline through Dagster against the same engine alone and the seed's own SQL."""
