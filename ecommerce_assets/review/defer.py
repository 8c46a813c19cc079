"""A slim build's upstream (dbt's `--defer`): the changed models and everything downstream of them
are built; each table they read that the build does not make is copied from production.

A readers' copy holds only what readers see (marts, ml, analyses): an upstream table it lacks, like
staging's views, is built here from the raw files, with its own upstream in turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb

from ecommerce_assets.project.node import Node
from ecommerce_assets.review.against import OTHER, attach, relations


def defer_upstream(database: str, defer_to: str, nodes: Sequence[Node], build: set[str]) -> tuple[set[str], list[str]]:
    """Copies into the warehouse `database` the upstream tables of the nodes named in `build` from
    `defer_to`; returns the node names to build (with those it could not copy) and the tables copied."""
    by_name = {n.name: n for n in nodes}
    build = set(build)
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(database)
    try:
        attach(con, defer_to, "--defer-to")
        there = relations(con)
        deferred: list[str] = []
        pending = [n for n in nodes if n.name in build]
        while pending:
            node = pending.pop()
            for upstream in dict.fromkeys([*node.deps, *(t for ts in node.check_deps.values() for t in ts)]):
                up = by_name[upstream]
                if up.name in build or up.table in deferred:
                    continue
                if up.table in there:
                    deferred.append(up.table)
                else:
                    build.add(up.name)
                    pending.append(up)
        for table in deferred:
            con.execute(f"create schema if not exists {table.split('.', 1)[0]}")
            con.execute(f"create or replace table {table} as from {OTHER}.{table}")
    finally:
        con.close()
    return build, deferred
