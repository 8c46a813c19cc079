"""Checks on planted defects: exact failing counts, blocking, intact tables, the CLI gate."""

import os
import re
import shutil
import subprocess
import sys

import dagster as dg
import duckdb
import pytest

from ecommerce_assets.paths import SQL_DIR
from ecommerce_assets_tests.conftest import FIXTURES, make_warehouse
from ecommerce_assets_tests.integration.run.test_pipeline import materialized

DIRTY = FIXTURES / "dirty"

# check -> failing rows on fixtures/dirty (rows appended to the bundled data, one defect each).
# Broken keys and references are rejected row by row into stg_rejected_rows (one failing row of
# its WARN check per source and reason); what staging keeps and flags is counted by its check.
DIRTY_FAILURES = {
    ("stg_customers", "not_null_email"): 1,  # customer 6: 'no-at-sign', kept and flagged (WARN)
    ("stg_products", "prices_positive"): 1,  # product 106 costs 0
    ("int_customer_orders", "completed_orders_have_items"): 1,  # an order whose lines were all rejected
    ("stg_rejected_rows", "rows_rejected"): 16,
}
DOWNSTREAM_TABLES = [
    *(f"raw.{name}" for name in ("raw_customers", "raw_orders", "raw_order_items", "raw_products")),
    *(f"staging.{name}" for name in ("stg_customers", "stg_orders", "stg_order_items", "stg_products")),
    "intermediate.int_customer_orders",
    "intermediate.int_customer_rfm",
    "intermediate.int_product_metrics",
    "marts.fct_customer_metrics",
    "marts.dim_customer_segments",
    "marts.fct_product_performance",
    "ml.ml_customer_features",
]


def failures(result) -> dict:
    return {
        (e.asset_key.to_user_string(), e.check_name): e.metadata["failing_rows"].value
        for e in result.get_asset_check_evaluations()
        if not e.passed
    }


def snapshot(wh) -> dict:
    """Every table's rows, without the load timestamps (another raw file may be reloaded)."""
    loaded_at = {"raw": "exclude (_loaded_at)", "staging": "exclude (loaded_at)"}
    return {
        t: wh.query(f"select * {loaded_at.get(t.split('.')[0], '')} from {t} order by all") for t in DOWNSTREAM_TABLES
    }


@pytest.fixture(scope="module")
def clean_then_dirty(tmp_path_factory):
    """A warehouse built on the bundled data, then run again on the dirty data (read-only for tests)."""
    wh = make_warehouse(tmp_path_factory.mktemp("clean_then_dirty"))
    assert wh.run().success
    before = snapshot(wh)
    result = wh.run(run_config={"ops": {"warehouse": {"config": {"data_dir": str(DIRTY)}}}})
    return wh, before, result


@pytest.fixture(scope="module")
def blocked(tmp_path_factory):
    """The same two runs where an invalid email is an ERROR (so blocking) on stg_customers."""
    tmp = tmp_path_factory.mktemp("blocked")
    sql = tmp / "sql"
    shutil.copytree(SQL_DIR, sql)
    customers = sql / "staging" / "stg_customers.sql"
    customers.write_text(customers.read_text().replace("not_null: {severity: warn}", "not_null: {severity: error}"))
    wh = make_warehouse(tmp, sql_dir=sql)
    assert wh.run().success
    before = snapshot(wh)
    return wh, before, wh.run(run_config={"ops": {"warehouse": {"config": {"data_dir": str(DIRTY)}}}})


def test_each_planted_defect_is_reported_by_its_check_with_the_exact_count(clean_then_dirty):
    _, _, result = clean_then_dirty
    assert failures(result) == DIRTY_FAILURES
    severities = {
        (e.asset_key.to_user_string(), e.check_name): e.severity for e in result.get_asset_check_evaluations()
    }
    assert severities["stg_customers", "not_null_email"] == dg.AssetCheckSeverity.WARN
    assert severities["stg_orders", "relationships_customer_id"] == dg.AssetCheckSeverity.ERROR


def test_failed_blocking_checks_publish_nothing_they_guard(blocked):
    """stg_customers fails a blocking check: the raw table and the rejects under it are not published
    (the published view would show the blocked rows through them), nor the other staging views
    built from the rejects, nor the raw tables under those: the whole warehouse, raw tables
    included, stays the previous run's."""
    wh, before, result = blocked
    assert not result.success
    assert ("stg_customers", "not_null_email") in failures(result)
    assert materialized(result) == set()
    assert snapshot(wh) == before
    leftovers = wh.query("select table_name from duckdb_tables() where table_name like '%\\_\\_%' escape '\\'")
    assert leftovers == []


def test_failing_rows_are_shown_with_the_query(clean_then_dirty):
    _, _, result = clean_then_dirty
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == "rows_rejected")
    assert "| raw_customers | duplicate_key | 2 | 5 |" in evaluation.metadata["failing_sample"].value
    assert "from staging.stg_rejected_rows" in evaluation.metadata["query"].value
    assert evaluation.description.startswith("16 failing row(s): No raw row is rejected")


# Defects planted straight into built tables, then only the checks run (the checks job). A
# changed fct_customer_metrics row also shows up in its incremental twin's comparison.
REBUILD = ("fct_customer_metrics_incremental", "equals_full_rebuild")
TAMPERED = [
    (
        "update marts.fct_customer_metrics set churn_risk = 'Unknown' where customer_id = 2",
        {("fct_customer_metrics", "accepted_values_churn_risk"): 1, REBUILD: 1},
    ),
    (
        "update marts.fct_customer_metrics set predicted_clv_12m = -1 where customer_id in (3, 4)",
        {("fct_customer_metrics", "assert_positive_clv"): 2, REBUILD: 2},
    ),
    (
        "update marts.fct_customer_metrics set recency_score = 0 where customer_id = 4",
        {("fct_customer_metrics", "assert_rfm_scores_valid"): 1, REBUILD: 1},
    ),
    (
        "update marts.fct_customer_metrics set monetary_value = null where customer_id = 1",
        {
            ("fct_customer_metrics", "not_null_monetary_value"): 1,
            ("fct_customer_metrics", "revenue_conserved"): 1,
            REBUILD: 1,
        },
    ),
    (
        "update marts.fct_customer_metrics set predicted_clv_12m = null where customer_id = 1",
        {("fct_customer_metrics", "not_null_predicted_clv_12m"): 1, REBUILD: 1},
    ),
    (
        "insert into marts.fct_customer_metrics select * from marts.fct_customer_metrics where customer_id = 5",
        {
            ("fct_customer_metrics", "unique_customer_id"): 1,
            ("fct_customer_metrics", "one_row_per_customer_id"): 1,
            ("fct_customer_metrics", "revenue_conserved"): 1,
            ("dim_customer_segments", "one_row_per_customer_id"): 1,
            ("ml_customer_features", "one_row_per_customer_id"): 1,
        },
    ),
    (
        "update marts.dim_customer_segments set customer_segment = 'VIP' where customer_id = 1",
        {("dim_customer_segments", "accepted_values_customer_segment"): 1},
    ),
    (
        "update marts.fct_product_performance set performance_tier = 'Gold' where product_id = 101",
        {("fct_product_performance", "accepted_values_performance_tier"): 1},
    ),
    (
        "delete from ml.ml_customer_features where customer_id = 3",
        {("ml_customer_features", "one_row_per_customer_id"): 1},
    ),
    (
        "update ml.ml_customer_features set orders_per_month = 'inf'::double where customer_id = 1",
        {("ml_customer_features", "no_nan_or_inf"): 1},
    ),
    (
        "update intermediate.int_customer_rfm set analysis_date = date '2023-07-01'",
        {("int_customer_rfm", "analysis_date_not_before_latest_order"): 1},
    ),
    (
        "update intermediate.int_customer_orders set items_count = 0 where order_id = 1002",
        {("int_customer_orders", "completed_orders_have_items"): 1},
    ),
    (
        "update intermediate.int_customer_orders set order_total = order_total + 1 where order_id = 1002",
        {("fct_customer_metrics", "revenue_conserved"): 1},
    ),
]


@pytest.mark.parametrize("tamper, expected", TAMPERED, ids=[next(iter(e))[1] for _, e in TAMPERED])
def test_checks_only_run_catches_a_defect_in_a_built_table(built, tmp_path, tamper, expected):
    wh, _ = built
    copy = make_warehouse(tmp_path)
    shutil.copy(wh.settings.duckdb_path, copy.settings.duckdb_path)
    with duckdb.connect(copy.settings.duckdb_path) as con:
        con.execute(tamper)
    result = copy.run("checks_job")
    assert materialized(result) == set()
    assert failures(result) == expected


def run_cli(*args, db, tmp_path):
    env = {**os.environ, "ECOMMERCE_DUCKDB_PATH": str(db), "ECOMMERCE_OUTPUT_DIR": str(tmp_path / "out")}
    env.pop("DAGSTER_HOME", None)
    return subprocess.run(
        [sys.executable, "-m", "ecommerce_assets.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_gate_exits_non_zero_on_error_checks_and_zero_on_clean_data(built, tmp_path):
    wh, _ = built
    db = tmp_path / "cli.duckdb"
    shutil.copy(wh.settings.duckdb_path, db)
    clean = run_cli("check", db=db, tmp_path=tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "0 failed (ERROR)" in clean.stdout
    one_model = run_cli("check", "--select", "stg_orders", "--threads", "1", db=db, tmp_path=tmp_path)
    assert "0 assets materialized; 5 checks: 5 passed" in one_model.stdout, one_model.stdout + one_model.stderr
    dirty = run_cli("build", "--data-dir", str(DIRTY), "--threads", "1", db=db, tmp_path=tmp_path)
    assert dirty.returncode == 0, dirty.stdout + dirty.stderr  # bad rows are rejected, with a WARN
    assert "warn  stg_rejected_rows.rows_rejected (16 failing rows)" in dirty.stdout
    assert "warn  stg_customers.not_null_email (1 failing rows)" in dirty.stdout
    with duckdb.connect(str(db)) as con:
        con.execute("insert into marts.fct_customer_metrics from marts.fct_customer_metrics where customer_id = 1")
    tampered = run_cli("check", db=db, tmp_path=tmp_path)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert "error fct_customer_metrics.unique_customer_id (1 failing rows)" in tampered.stdout


@pytest.mark.parametrize(
    "name, text, message",
    [
        (
            "raw_orders",
            "order_id,customer_id,order_date,status,shipping_cost\n1001,1,2023-02-01,completed,5.99\n1002,abc,2023-03-15,completed,5.99\n",
            r"raw_orders\.csv: could not load into raw\.raw_orders(.|\n)*Line: 3(.|\n)*column \"customer_id\"",
        ),
        (
            "raw_orders",
            "order_id,customer,order_date,status,shipping_cost\n1001,1,2023-02-01,completed,5.99\n",
            r"raw_orders\.csv:1: missing column customer_id",
        ),
        (
            "raw_orders",
            "order_id,customer_id,order_date,status,shipping_cost\n1001,1,02/01/2023,completed,5.99\n",
            r"raw_orders\.csv: could not load(.|\n)*order_date",
        ),
    ],
    ids=["bad-integer", "bad-header", "bad-date"],
)
def test_bad_raw_file_fails_clearly_and_loses_nothing(tmp_path, name, text, message):
    wh = make_warehouse(tmp_path)
    assert wh.run().success
    before = wh.query("select * exclude (_loaded_at) from raw.raw_orders order by all"), snapshot(wh)
    bad = tmp_path / "bad"
    shutil.copytree(FIXTURES.parent.parent / "data", bad)
    (bad / f"{name}.csv").write_text(text)
    result = wh.run(run_config={"ops": {"warehouse": {"config": {"data_dir": str(bad)}}}})
    assert not result.success
    error = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error.message
    assert re.search(message, error), error
    assert (wh.query("select * exclude (_loaded_at) from raw.raw_orders order by all"), snapshot(wh)) == before


def test_missing_raw_file_names_what_was_expected(tmp_path):
    wh = make_warehouse(tmp_path, data_dir=tmp_path)
    result = wh.run()
    error = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error.message
    assert f"raw.raw_customers: no raw_customers.csv, raw_customers.parquet or raw_customers/ in {tmp_path}" in error
