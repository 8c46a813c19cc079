"""A pull request's view of a change: `plan` names what a changed model rebuilds, a slim build
(`--select 'state:modified+' --defer-to`) builds only that, reading the rest from production, and
`diff` shows how the numbers move. Production is a real build of the bundled data; the change is
made in a copy of the project, run as a user runs a checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from ecommerce_assets.definitions import load_project
from ecommerce_assets.project.sources import RAW_TABLES
from ecommerce_assets.review.change_plan import plan, published_state
from ecommerce_assets.run.duckdb.catalog import bind
from ecommerce_assets_tests.conftest import ROOT

BOUNDARY = "when recency_days <= 30 then 5"


def _cli(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("ECOMMERCE_", "DAGSTER_"))}
    result = subprocess.run(
        [sys.executable, "-m", "ecommerce_assets.cli", *args],
        cwd=project,
        env=environment | {"PYTHONPATH": str(project)} | env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    """Production built from the project as it is; a copy of the project whose RFM recency boundary
    moved from 30 to 45 days."""
    tmp = tmp_path_factory.mktemp("workflow")
    project = tmp / "project"
    project.mkdir()
    for part in ("ecommerce_assets", "sql", "data"):
        shutil.copytree(ROOT / part, project / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", project)
    prod = tmp / "prod" / "prod.duckdb"
    _cli(project, "build", ECOMMERCE_DUCKDB_PATH=str(prod), ECOMMERCE_OUTPUT_DIR=str(tmp / "prod-output"))
    rfm = project / "sql" / "intermediate" / "int_customer_rfm.sql"
    assert rfm.read_text().count(BOUNDARY) == 1
    rfm.write_text(rfm.read_text().replace(BOUNDARY, "when recency_days <= 45 then 5"))
    return project, prod, tmp


def test_plan_names_the_changed_model_its_downstream_and_the_kept_ones(workflow):
    project, prod, _ = workflow
    out = _cli(project, "plan", "--against", str(prod)).stdout
    lines = {line.split()[-1]: line.rsplit(" ", 1)[0].strip() for line in out.splitlines()[:-1] if "   " in line}
    assert lines["intermediate.int_customer_rfm"] == "modified, non-breaking"
    assert lines["marts.fct_customer_metrics"] == lines["marts.dim_customer_segments"] == "downstream"
    assert lines["marts.fct_product_performance"] == lines["intermediate.int_customer_order_stats"] == "kept"
    assert out.splitlines()[-1] == "1 modified (0 breaking), 0 added, 10 rebuilt downstream, 16 kept, 0 removed"
    # The readers' copy carries the same state: the plan against it is the same.
    assert _cli(project, "plan", "--against", str(prod.with_name("prod.serving.duckdb"))).stdout == out


def test_a_removed_column_is_a_breaking_change(workflow, tmp_path):
    project, prod, _ = workflow
    sql_dir = tmp_path / "sql"
    shutil.copytree(project / "sql", sql_dir)
    grid = sql_dir / "analyses" / "rfm_score_grid.sql"
    column = "customer_count"
    line = f"    count(*) as {column},\n"
    assert grid.read_text().count(line) == 1
    grid.write_text(grid.read_text().replace(line, ""))
    models, macros = load_project(sql_dir)
    nodes = [*RAW_TABLES, *models]
    con = duckdb.connect()
    con.execute(f"attach '{prod}' as prod (read_only)")
    planned = {p.table: p for p in plan(nodes, bind(nodes, macros, cache=False), published_state(con, "prod"))}
    assert planned["analyses.rfm_score_grid"].status == "modified"
    assert planned["analyses.rfm_score_grid"].breaking
    assert f"column removed: {column}" in planned["analyses.rfm_score_grid"].changes


def test_the_slim_build_builds_only_the_change_and_diff_shows_the_moved_scores(workflow):
    project, prod, tmp = workflow
    ci = {"ECOMMERCE_DUCKDB_PATH": str(tmp / "ci" / "ci.duckdb"), "ECOMMERCE_OUTPUT_DIR": str(tmp / "ci-output")}
    out = _cli(project, "build", "--select", "state:modified+", "--defer-to", str(prod), **ci).stdout
    assert "slim build: 11 asset(s) to build, 4 upstream table(s) read from" in out
    assert "11 assets materialized" in out and "run succeeded" in out
    con = duckdb.connect(ci["ECOMMERCE_DUCKDB_PATH"], read_only=True)
    built = {r[0] for r in con.execute("select distinct table_name from raw._published").fetchall()}
    con.close()
    assert "intermediate.int_customer_rfm" in built and "marts.fct_product_performance" not in built
    assert len(built) == 11
    diff = _cli(project, "diff", "--against", str(prod.with_name("prod.serving.duckdb")), **ci).stdout
    assert "marts.fct_customer_metrics: 5 -> 5 rows; 0 only here, 0 only there, 1 changed by customer_id" in diff
    assert "    recency_score: 80.00% of matched rows equal" in diff
    assert "e.g. 3, recency_score: 4 -> 5" in diff


def test_the_readers_copy_equals_the_warehouse_value_for_value(workflow):
    project, prod, _ = workflow
    out = _cli(
        project, "diff", "--against", str(prod.with_name("prod.serving.duckdb")), ECOMMERCE_DUCKDB_PATH=str(prod)
    ).stdout
    assert out.splitlines()[-1] == "13 tables compared, 0 differ"


def test_a_slim_build_of_an_unchanged_project_builds_nothing_and_writes_nothing(workflow):
    _, prod, tmp = workflow
    ci = tmp / "unchanged" / "ci.duckdb"
    out = _cli(ROOT, "build", "--select", "state:modified+", "--defer-to", str(prod), ECOMMERCE_DUCKDB_PATH=str(ci))
    assert out.stdout.strip().splitlines()[-1] == "slim build: no model changed, nothing to build"
    assert not ci.exists()
