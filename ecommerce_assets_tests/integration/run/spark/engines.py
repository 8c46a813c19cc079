"""What the engine-equality tests share: a build on each engine, and tables compared value for value."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import dagster as dg

from ecommerce_assets.definitions import load_project
from ecommerce_assets.project.sources import RAW_TABLES
from ecommerce_assets.run.adapter import Built, Checked, Selection
from ecommerce_assets.run.options import RunOptions
from ecommerce_assets.run.spark.adapter import run_project
from ecommerce_assets_tests.conftest import make_warehouse

# When a run wrote the row, not what it is: two runs differ here whatever the engine. row_hash is
# each engine's own hash function.
RUN_COLUMNS = {"row_hash", "updated_at", "loaded_at", "_loaded_at", "run_started_at", "feature_generated_at"}


def _normal(v):
    """Doubles and decimals rounded (engines sum in different orders and types), dates as text."""
    if isinstance(v, (float, Decimal)) and not isinstance(v, bool):
        return round(float(v), 6)
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    return v


def normalized(rows, columns) -> list[tuple]:
    keep = [i for i, c in enumerate(columns) if c not in RUN_COLUMNS]
    return sorted((tuple(_normal(r[i]) for i in keep) for r in rows), key=repr)


def duckdb_build(tmp_path: Path, data_dir: Path, sql_dir: Path | None = None, names: set[str] | None = None):
    wh = make_warehouse(tmp_path / "duckdb", data_dir, **({"sql_dir": sql_dir} if sql_dir else {}))
    result = wh.run(selection=[dg.AssetKey(n) for n in sorted(names)] if names else None)
    outcomes = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    return wh, outcomes


def spark_build(spark, tmp_path: Path, data_dir: Path, sql_dir: Path | None = None, names: set[str] | None = None):
    """A run of every node (or of `names`, with their checks), as `duckdb_build`'s."""
    models, macros = load_project(*([sql_dir] if sql_dir else []))
    nodes = [*RAW_TABLES, *models]
    options = RunOptions(data_dir=data_dir, output_dir=tmp_path / "spark-output")
    selection = Selection.everything(nodes)
    if names:
        selection = Selection(frozenset(names), frozenset(c for c in selection.checks if c[0] in names))
    events = run_project(spark, nodes, macros, options, selection)
    outcomes = {
        (e.node.name, e.check.name): bool(e.outcome and e.outcome.passed) for e in events if isinstance(e, Checked)
    }
    published = {e.node.name for e in events if isinstance(e, Built)}
    return nodes, outcomes, published


def assert_same_tables(spark, wh, nodes) -> None:
    differ = []
    for node in nodes:
        with_duckdb = wh.query(f"select * from {node.table}")
        columns = [c for c, *_ in wh.query(f"describe {node.table}")]
        frame = spark.table(node.table)
        assert frame.columns == columns, node.table
        if normalized(with_duckdb, columns) != normalized(frame.collect(), columns):
            differ.append(node.table)
    assert differ == []
