"""The seed's dbt project (benchmarks/dbt_seed) as Dagster assets through dagster-dbt: the benchmark's
`dagster-dbt` contender, written the way a user of dagster-dbt writes it.

    DBT_SEED_DATA_DIR=<dir of raw_*.csv> DBT_DUCKDB_PATH=<new .duckdb file> DBT_TARGET_PATH=<dir> \
      dbt parse --project-dir benchmarks/dbt_seed --profiles-dir benchmarks/dbt_seed    # the prepared manifest
    DAGSTER_HOME=<dir> (same variables) dagster asset materialize -f benchmarks/dagster_dbt_seed.py --select '*'

It runs in the dbt venv's Python (dagster, dagster-dbt, dbt-duckdb: see benchmark.py's docstring),
with that venv's bin/ first on PATH so that DbtCliResource finds its `dbt`; it imports nothing of
this repo. DBT_TARGET_PATH names where the manifest was prepared (default: the project's target/):
each `dbt build` writes its artifacts into a folder of its own under it, starting from the parse's
partial_parse.msgpack. DBT_SEED_PROJECT_DIR names another project (benchmark.py's --dbt-project).
"""

import os
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets

project = DbtProject(
    project_dir=Path(os.environ.get("DBT_SEED_PROJECT_DIR") or Path(__file__).with_name("dbt_seed")).resolve(),
    target_path=os.environ.get("DBT_TARGET_PATH", "target"),
)
# Parses at load time only under `dagster dev`; elsewhere the manifest must have been prepared.
project.prepare_if_dev()


@dbt_assets(manifest=project.manifest_path)
def dbt_seed_assets(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    yield from dbt.cli(["build"], context=context).stream()


defs = dg.Definitions(assets=[dbt_seed_assets], resources={"dbt": DbtCliResource(project_dir=project)})
