"""The code location loads, and the graph has the shape the SQL files declare."""

import dagster as dg
import pytest

from ecommerce_assets.definitions import build_definitions, defs
from ecommerce_assets.errors import ModelError
from ecommerce_assets.ml.churn.assets import TRAINING_ASSETS
from ecommerce_assets.project.models import load_models, resolve_deps
from ecommerce_assets.project.sources import RAW_TABLES
from ecommerce_assets.settings import Settings

RAW = {"raw_customers", "raw_orders", "raw_order_items", "raw_products"}

# The seed's lineage, written out by hand: model -> upstream assets. Each staging view also leaves
# out the raw rows stg_rejected_rows rejects (a rejected reference rejects its referrers).
EXPECTED_UPSTREAM = {
    "stg_rejected_rows": RAW,
    "stg_customers": {"raw_customers", "stg_rejected_rows"},
    "stg_orders": {"raw_orders", "stg_rejected_rows"},
    "stg_order_items": {"raw_order_items", "stg_rejected_rows"},
    "stg_products": {"raw_products", "stg_rejected_rows"},
    "int_customer_orders": {"stg_orders", "stg_order_items"},
    # The totals and pairs maintained from each day's changes (issue 15), from which the seed's
    # RFM and product metrics are computed.
    "int_customer_order_stats": {"int_customer_orders"},
    "int_customer_product_sales": {"stg_orders", "stg_order_items"},
    "int_customer_rfm": {"stg_customers", "int_customer_order_stats"},
    "int_product_metrics": {"int_customer_product_sales", "stg_products"},
    "fct_customer_metrics": {"stg_customers", "int_customer_rfm"},
    "dim_customer_segments": {"fct_customer_metrics"},
    "fct_product_performance": {"int_product_metrics"},
    "ml_customer_features": {"fct_customer_metrics", "int_customer_order_stats", "int_customer_orders"},
    # The seed's Module 7.3.
    "fct_customer_metrics_incremental": {"fct_customer_metrics"},
}


@pytest.fixture(scope="module")
def graph():
    return defs.resolve_asset_graph()


def keys(selection: str, graph) -> set[str]:
    return {k.to_user_string() for k in dg.AssetSelection.from_string(selection).resolve(graph)}


def test_every_sql_file_is_one_asset_with_the_seed_lineage(graph):
    # The churn model's assets are Python assets beside the SQL models (ecommerce_assets/ml/churn/).
    pipeline = {k.to_user_string() for k in graph.get_all_asset_keys()} - keys("group:analyses or group:churn", graph)
    assert pipeline == RAW | set(EXPECTED_UPSTREAM)
    for name, upstream in EXPECTED_UPSTREAM.items():
        parents = {k.to_user_string() for k in graph.get(dg.AssetKey(name)).parent_keys}
        assert parents == upstream, name


def test_groups_tags_and_kinds_follow_the_seed(graph):
    assert keys("group:staging", graph) == {
        "stg_customers",
        "stg_orders",
        "stg_order_items",
        "stg_products",
        "stg_rejected_rows",
    }
    assert keys("group:raw", graph) == RAW
    assert keys("tag:ml", graph) == {"ml_customer_features"}
    assert keys("tag:features", graph) == {"ml_customer_features"}
    assert keys("tag:rfm", graph) == {"int_customer_rfm"}
    assert keys("tag:segmentation", graph) == {"dim_customer_segments"}
    assert keys("tag:marts", graph) == {
        "fct_customer_metrics",
        "dim_customer_segments",
        "fct_product_performance",
        "fct_customer_metrics_incremental",
    }
    assert keys("tag:incremental", graph) == {"fct_customer_metrics_incremental"}
    assert {"int_product_metrics", "fct_product_performance", "stg_products"} <= keys("tag:product", graph)
    node = graph.get(dg.AssetKey("fct_customer_metrics"))
    assert node.kinds == {"duckdb", "sql"}
    assert "Comprehensive customer metrics" in node.description
    assert node.metadata["dagster/table_name"] == "marts.fct_customer_metrics"
    assert node.code_version


def test_lineage_selections_match_dbt(graph):
    # dbt `fct_customer_metrics+` (all downstream) and `+fct_customer_metrics` (all upstream).
    assert keys("fct_customer_metrics*", graph) - keys("group:analyses or group:churn", graph) == {
        "fct_customer_metrics",
        "dim_customer_segments",
        "ml_customer_features",
        "fct_customer_metrics_incremental",
    }
    assert keys("*fct_customer_metrics", graph) == {
        "fct_customer_metrics",
        "int_customer_rfm",
        "int_customer_order_stats",
        "int_customer_orders",
        "stg_customers",
        "stg_orders",
        "stg_order_items",
        "stg_rejected_rows",
        *RAW,  # raw_products through the rejects: a line of an unknown product is rejected
    }


def test_every_seed_test_is_a_check_on_the_asset_it_guards(graph):
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    seed_tests = {
        ("stg_customers", "unique_customer_id"),
        ("stg_customers", "not_null_customer_id"),
        ("stg_customers", "not_null_email"),
        ("stg_orders", "unique_order_id"),
        ("stg_orders", "not_null_order_id"),
        ("stg_orders", "not_null_customer_id"),
        ("stg_orders", "relationships_customer_id"),
        ("stg_order_items", "unique_order_item_id"),
        ("stg_order_items", "not_null_order_item_id"),
        ("stg_order_items", "not_null_order_id"),
        ("stg_order_items", "relationships_order_id"),
        ("stg_products", "unique_product_id"),
        ("stg_products", "not_null_product_id"),
        ("fct_customer_metrics", "unique_customer_id"),
        ("fct_customer_metrics", "not_null_customer_id"),
        ("fct_customer_metrics", "not_null_monetary_value"),
        ("fct_customer_metrics", "not_null_predicted_clv_12m"),
        ("fct_customer_metrics", "accepted_values_churn_risk"),
        ("dim_customer_segments", "accepted_values_customer_segment"),
        ("ml_customer_features", "unique_customer_id"),
        ("ml_customer_features", "not_null_customer_id"),
        ("fct_customer_metrics", "assert_positive_clv"),
        ("fct_customer_metrics", "assert_rfm_scores_valid"),
    }
    assert seed_tests <= checks
    specs = {(k.asset_key.to_user_string(), k.name): graph.get_check_spec(k) for k in graph.asset_check_keys}
    assert specs["stg_orders", "relationships_customer_id"].blocking
    assert not specs["stg_customers", "not_null_email"].blocking  # kept and flagged, so only a warning
    assert not specs["fct_customer_metrics", "accepted_values_churn_risk"].blocking
    # A relationships check reads its parent table, so Dagster orders it after that table.
    assert dg.AssetKey("stg_customers") in {
        d.asset_key for d in specs["stg_orders", "relationships_customer_id"].additional_deps
    }


def test_daily_schedule_targets_every_asset_and_check_but_the_weekly_training():
    schedule = defs.resolve_schedule_def("daily_warehouse")
    assert schedule.cron_schedule == "0 6 * * *"
    job = defs.resolve_job_def(schedule.job_name)
    graph = defs.resolve_asset_graph()
    training = {dg.AssetKey(name) for name in TRAINING_ASSETS}
    assert set(job.asset_layer.selected_asset_keys) == set(graph.get_all_asset_keys()) - training
    assert {k for k in job.asset_layer.asset_graph.asset_check_keys if k.asset_key in training} == set()
    weekly = defs.resolve_job_def(defs.resolve_schedule_def("weekly_churn_training").job_name)
    assert set(weekly.asset_layer.selected_asset_keys) == training


def test_schedule_cron_and_timezone_are_settings(tmp_path):
    settings = Settings.from_env(
        {"ECOMMERCE_SCHEDULE_CRON": "30 2 * * 1", "ECOMMERCE_SCHEDULE_TIMEZONE": "Asia/Jakarta"}
    )
    schedule = build_definitions(settings).resolve_schedule_def("daily_warehouse")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("30 2 * * 1", "Asia/Jakarta")


def test_targets_pick_documented_defaults():
    dev, prod = Settings.from_env({}), Settings.from_env({"ECOMMERCE_TARGET": "prod"})
    assert dev.duckdb_path.endswith("warehouse/dev.duckdb") and prod.duckdb_path.endswith("warehouse/prod.duckdb")
    assert (
        Settings.from_env({"ECOMMERCE_TARGET": "prod", "ECOMMERCE_DUCKDB_PATH": "/x/y.duckdb"}).duckdb_path
        == "/x/y.duckdb"
    )
    with pytest.raises(ValueError, match="ECOMMERCE_TARGET"):
        Settings.from_env({"ECOMMERCE_TARGET": "staging"})
    assert (dev.concurrency, Settings.from_env({"ECOMMERCE_CONCURRENCY": "1"}).concurrency) == (2, 1)
    for bad in ("0", "two"):
        with pytest.raises(ValueError, match="ECOMMERCE_CONCURRENCY"):
            Settings.from_env({"ECOMMERCE_CONCURRENCY": bad})


def write_model(sql_dir, layer, name, sql):
    (sql_dir / layer).mkdir(parents=True, exist_ok=True)
    (sql_dir / layer / f"{name}.sql").write_text(sql)


def test_unknown_table_reference_fails_at_load_with_the_file_and_table(tmp_path):
    write_model(tmp_path, "staging", "stg_orders", "select * from raw.raw_orders")
    write_model(
        tmp_path,
        "marts",
        "fct_x",
        "with o as (select * from staging.stg_orders)\nselect * from o join staging.stg_ordrs using (order_id)",
    )
    with pytest.raises(ModelError, match=r"fct_x\.sql:2: the model reads staging\.stg_ordrs, which is no model"):
        resolve_deps(load_models(tmp_path), {r.name: "raw" for r in RAW_TABLES})


def test_unknown_check_kind_and_bad_header_fail_clearly(tmp_path):
    write_model(tmp_path, "staging", "stg_a", "/*\ncolumns:\n  id:\n    checks: [uniq]\n*/\nselect 1 as id")
    with pytest.raises(ModelError, match=r"stg_a\.sql:4: columns\.id\.checks\[0\]: unknown check kind 'uniq'"):
        load_models(tmp_path)
    write_model(tmp_path, "staging", "stg_a", "/*\ncolumns: [unclosed\n*/\nselect 1 as id")
    with pytest.raises(ModelError, match=r"stg_a\.sql:3: the header comment is not valid YAML"):
        load_models(tmp_path)


@pytest.mark.parametrize(
    "export", ["{file: out.xlsx}", "{file: ../out.csv}", "{where: x > 1}", "{file: a.csv, sort: x}"]
)
def test_a_bad_export_header_fails_at_load_with_the_file(tmp_path, export):
    write_model(tmp_path, "analyses", "a", f"/*\nexport: {export}\n*/\nselect 1 as x")
    with pytest.raises(ModelError, match=r"a\.sql:2: export"):
        load_models(tmp_path)


def test_cte_names_are_not_dependencies(tmp_path):
    write_model(tmp_path, "staging", "stg_orders", "with raw_orders as (select 1 as x) select * from raw_orders")
    (model,) = resolve_deps(load_models(tmp_path), {})
    assert model.deps == ()


def test_no_model_reads_the_clock():
    for model in load_models():
        assert "current_date" not in model.sql.lower() and "now()" not in model.sql.lower(), model.path


def test_pass_through_columns_inherit_their_upstream_description():
    models = {m.name: m for m in resolve_deps(load_models(), {r.name: "raw" for r in RAW_TABLES})}
    dim = models["dim_customer_segments"].columns
    assert dim["email"] == "Cleaned email; NULL when invalid"  # declared on fct_customer_metrics only
    assert dim["customer_id"] == "Primary key"  # its own declaration wins
    assert models["ml_customer_features"].columns["monetary_value"] == "Total revenue from customer"


def test_text_in_the_ui_says_what_it_is():
    """Descriptions as written (the UI renders them as markdown), the column's upstream columns in
    its description before any run, the check's severity first, no status-like metadata name."""
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key == dg.AssetKey("stg_rejected_rows"))
    reason = next(c for c in spec.metadata["dagster/column_schema"].columns if c.name == "reason").description
    assert r"null\_\<reference\>\_id" in reason and "raw_orders.customer_id" in reason.partition("From: ")[2]
    graph = defs.resolve_asset_graph()
    check = graph.get_check_spec(dg.AssetCheckKey(dg.AssetKey("fct_customer_metrics"), "unique_customer_id"))
    assert check.description.startswith("ERROR (blocking): ")
    metrics = next(s for s in defs.resolve_all_asset_specs() if s.key == dg.AssetKey("fct_customer_metrics"))
    assert metrics.metadata["built as"] == "table" and "materialized" not in metrics.metadata
