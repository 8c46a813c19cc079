"""The benchmark's reference points on real data, and the benchmark command end to end."""

import json
import re
import subprocess
import sys

import duckdb

from benchmarks import seed_baseline
from ecommerce_assets.project.models import load_models
from ecommerce_assets.project.sources import RAW_TABLES
from ecommerce_assets_tests.conftest import ROOT, SEED_REFERENCE, assert_equals_reference

DATA = ROOT / "data"


def test_the_seed_baseline_reproduces_the_seed_reference_and_passes_its_tests(tmp_path):
    con = duckdb.connect(str(tmp_path / "seed.duckdb"))
    results = seed_baseline.run(con, str(DATA))
    kinds = [r["kind"] for r in results]
    assert (kinds.count("load"), kinds.count("model"), kinds.count("test")) == (4, 11, 23)
    assert [r["name"] for r in results if r.get("failing")] == []
    for reference in SEED_REFERENCE:
        schema = con.execute(
            "select table_schema from information_schema.tables where table_name = ?", [reference.stem]
        ).fetchone()[0]
        assert_equals_reference(lambda sql: con.execute(sql).fetchall(), f"{schema}.{reference.stem}", reference)


def benchmark(tmp_path, *options) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.benchmark",
        "--customers",
        "300",
        "--repeat",
        "1",
        "--workdir",
        str(tmp_path),
        "--no-dbt",  # dbt is no dependency of the project: the figures of ours and the seed's SQL
        *options,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_the_benchmark_command_reports_dagster_floor_and_seed(tmp_path):
    done = benchmark(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["wall_s"]) == {"dagster", "floor", "seed"}
    assert report["failed_checks"]["dagster"] == report["failed_checks"]["floor"] == []
    assert all(a["dagster_s"] is not None for a in report["assets"])  # every asset materialized through Dagster
    floor_built = {s["asset"] for s in report["runs"]["floor"][0]["statements"] if s["kind"] == "build"}
    assert (
        floor_built
        == {a["asset"] for a in report["assets"]}
        == {r.name for r in RAW_TABLES} | {m.name for m in load_models()}
    )
    assert "ratio dagster/floor" in done.stdout and not (tmp_path / "data").exists()  # cleaned up without --keep
    assert re.search(r"dagster/floor per repeat: \d+\.\d\dx$", done.stdout, re.M)


def test_the_benchmark_on_the_seeds_scope_builds_what_the_seeds_sql_builds_and_no_more(tmp_path):
    done = benchmark(tmp_path, "--seed-scope")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    seed_assets = {name for name, kind, _ in seed_baseline.statements("") if kind in ("load", "model")}
    # What the floor built: the seed's, the rejects its staging views read here, and the totals and
    # pairs maintained from each day's changes that the seed's RFM and product metrics read here.
    maintained = {"stg_rejected_rows", "int_customer_order_stats", "int_customer_product_sales"}
    assert len(seed_assets) == 15 and {a["asset"] for a in report["assets"]} == seed_assets | maintained
    assert all(a["dagster_s"] is not None for a in report["assets"])
    # Dagster evaluated exactly the checks of those assets: nothing outside the scope ran.
    assert report["dagster_checks_evaluated"] == sum(a["checks"] for a in report["assets"]) > 40
    assert set(report["wall_s"]) == {"dagster", "floor", "seed"} and report["scope"] == "the seed's scope"


def test_the_benchmark_refuses_a_selection_without_its_upstream_assets(tmp_path):
    done = benchmark(tmp_path, "--select", "ml_customer_features")
    assert done.returncode != 0
    assert "leaves out upstream assets" in done.stderr and "'int_customer_rfm'" in done.stderr
    assert not (tmp_path / "data").exists()  # refused before generating anything
