"""The names of the relations a run writes beside a node's published table `schema.name`.

A run builds `schema.name__build` and appends through `schema.name__delta` (run/duckdb/publish.py
publishes them); the next run drops any it finds, so nothing else may end in these suffixes.
"""

from __future__ import annotations

BUILD_SUFFIX = "__build"
DELTA_SUFFIX = "__delta"


def build_name(table: str) -> str:
    return table + BUILD_SUFFIX


def delta_name(table: str) -> str:
    return table + DELTA_SUFFIX
