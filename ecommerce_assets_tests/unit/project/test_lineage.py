"""Column lineage from the models' SQL (project/lineage.py), on the project's real models and real schemas.

The schemas come from DuckDB itself, fast and without data: empty raw tables, every model created
as a view in dependency order, then `describe`.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import dagster as dg
import duckdb
import pytest

from ecommerce_assets.project.lineage import LineageWarning, analyse_lineage, column_lineage
from ecommerce_assets.project.models import Model, load_macros, load_models, resolve_deps
from ecommerce_assets.project.sources import RAW_TABLES


@pytest.fixture(scope="module")
def project() -> tuple[list[Model], dict[str, list[str]]]:
    """The resolved models and every node's columns, as DuckDB describes them."""
    models = resolve_deps(load_models(), {r.name: r.layer for r in RAW_TABLES})
    schemas: dict[str, list[str]] = {}
    with duckdb.connect() as con:
        con.execute("set variable analysis_date = date '2024-06-30'")
        con.execute("set variable run_started_at = timestamp '2024-06-30 06:00:00'")
        for macro in load_macros():
            con.execute(macro)
        for raw in RAW_TABLES:
            con.execute(f"create schema if not exists {raw.layer}")
            columns = ", ".join(f"{c} {t}" for c, t in raw.columns.items())
            con.execute(f"create table {raw.table} ({columns}, _loaded_at timestamp)")
        for model in models:  # in dependency order
            con.execute(f"create schema if not exists {model.layer}")
            con.execute(f"create view {model.table} as {model.sql}")
        for node in [*RAW_TABLES, *models]:
            schemas[node.name] = [row[0] for row in con.execute(f"describe {node.table}").fetchall()]
    return models, schemas


@pytest.fixture(scope="module")
def lineage(project) -> dict[str, dict[str, list[tuple[str, str]]]]:
    models, schemas = project
    with warnings.catch_warnings():
        warnings.simplefilter("error", LineageWarning)  # every model of the project is analysed
        return column_lineage(models, schemas)


def upstream_raw(lineage, schemas, node: str, column: str) -> set[tuple[str, str]]:
    """Multi-hop lineage: the one-hop maps chained down to raw columns, as Dagster's UI does."""
    if node not in lineage:
        return {(node, column)}
    return {raw for dep in lineage[node][column] for raw in upstream_raw(lineage, schemas, *dep)}


def test_every_model_column_maps_to_columns_of_its_deps(project, lineage):
    models, schemas = project
    assert set(lineage) == {m.name for m in models}
    assert analyse_lineage(models, schemas).problems == {}
    for model in models:
        assert list(lineage[model.name]) == schemas[model.name], model.name
        for column, deps in lineage[model.name].items():
            assert deps == sorted(set(deps), key=lambda d: (d[0], schemas[d[0]].index(d[1]))), (model.name, column)
            for dep, dep_column in deps:
                assert dep in model.deps, (model.name, column, dep)
                assert dep_column in schemas[dep], (model.name, column, dep, dep_column)
    # Only literals, getvariable(...) and count(*) have no upstream column (a filtered count has: the
    # pairs' orders_count counts the first line of each order and product).
    empty = {(m, c) for m, columns in lineage.items() for c, deps in columns.items() if not deps}
    assert empty == {
        ("int_customer_rfm", "analysis_date"),
        ("fct_customer_metrics", "updated_at"),
        ("ml_customer_features", "analysis_date"),
        ("ml_customer_features", "feature_generated_at"),
        ("int_customer_order_stats", "orders_count"),
        ("int_customer_product_sales", "lines_count"),
        ("int_product_metrics", "customers_count"),
        ("rfm_score_grid", "customer_count"),
        ("churn_risk_by_segment", "customer_count"),
        ("marketing_budget_allocation", "customer_count"),
        ("segment_distribution", "customer_count"),
        ("stg_rejected_rows", "source"),
        ("stg_rejected_rows", "line"),
        ("stg_rejected_rows", "run_started_at"),
    }


def test_staging_columns_come_from_raw_columns_through_macros(lineage):
    customers = lineage["stg_customers"]
    assert customers["first_name"] == [("raw_customers", "first_name")]  # initcap(trim(first_name))
    assert customers["customer_created_at"] == [("raw_customers", "created_at")]
    assert customers["email"] == [("raw_customers", "email")]  # case on a flag computed from email
    assert customers["is_valid_email"] == [("raw_customers", "email")]
    assert customers["loaded_at"] == [("raw_customers", "_loaded_at")]  # through `select *` CTEs
    assert lineage["stg_order_items"]["line_total"] == [
        ("raw_order_items", "quantity"),
        ("raw_order_items", "unit_price"),
    ]
    assert lineage["stg_orders"]["is_completed"] == [("raw_orders", "status")]


def test_aggregates_through_ctes_and_joins(lineage):
    orders = lineage["int_customer_orders"]
    # coalesce(sum(line_total) from the item_totals CTE, 0) + o.shipping_cost
    assert orders["order_total"] == [("stg_order_items", "line_total"), ("stg_orders", "shipping_cost")]
    assert orders["order_subtotal"] == [("stg_order_items", "line_total")]
    assert orders["items_count"] == [("stg_order_items", "order_item_id")]
    # Columns read only by where / join / group by do not count (stg_orders.is_completed).
    assert orders["customer_id"] == [("stg_orders", "customer_id")]

    stats = lineage["int_customer_order_stats"]
    assert stats["order_total_sum"] == [("int_customer_orders", "order_total")]  # sum(order_total)
    rfm = lineage["int_customer_rfm"]
    assert rfm["monetary_value"] == [("int_customer_order_stats", "order_total_sum")]  # coalesce(..., 0)
    # datediff(coalesce(last_order_date, customer_created_at), getvariable('analysis_date'))
    assert rfm["recency_days"] == [
        ("int_customer_order_stats", "last_order_date"),
        ("stg_customers", "customer_created_at"),
    ]
    assert rfm["monetary_score"] == [("int_customer_order_stats", "order_total_sum")]  # case over a `select *` CTE
    assert rfm["customer_id"] == [("stg_customers", "customer_id")]

    metrics = lineage["fct_customer_metrics"]
    assert metrics["monetary_value"] == [("int_customer_rfm", "monetary_value")]
    assert metrics["current_clv"] == [("int_customer_rfm", "monetary_value")]
    assert metrics["predicted_clv_12m"] == [
        ("int_customer_rfm", "monetary_value"),
        ("int_customer_rfm", "rfm_total_score"),
    ]
    assert metrics["first_name"] == [("stg_customers", "first_name")]

    features = lineage["ml_customer_features"]
    assert features["max_order_value"] == [("int_customer_order_stats", "max_order_total")]
    # count(*) filter (where order_date >= ...): the filter's column counts; and the order count (>= 3)
    assert features["order_trend_ratio"] == [
        ("int_customer_order_stats", "orders_count"),
        ("int_customer_orders", "order_date"),
    ]


def test_star_and_exclude_pass_columns_through(project, lineage):
    _, schemas = project
    incremental = lineage["fct_customer_metrics_incremental"]  # select * exclude (updated_at)
    assert "updated_at" not in incremental
    assert incremental == {
        c: [("fct_customer_metrics", c)] for c in schemas["fct_customer_metrics"] if c != "updated_at"
    }
    performance = lineage["fct_product_performance"]  # pm.* from a `select *` CTE
    for column in schemas["int_product_metrics"]:
        assert performance[column] == [("int_product_metrics", column)]
    assert lineage["ml_features_export"]["order_trend_ratio"] == [("ml_customer_features", "order_trend_ratio")]


def test_window_functions_depend_on_their_partition_and_order(lineage):
    performance = lineage["fct_product_performance"]
    # row_number() over (order by pm.revenue desc, pm.product_id)
    assert performance["revenue_rank"] == [("int_product_metrics", "product_id"), ("int_product_metrics", "revenue")]
    # pm.revenue / nullif(sum(pm.revenue) over (partition by pm.category), 0)
    assert performance["category_revenue_share"] == [
        ("int_product_metrics", "category"),
        ("int_product_metrics", "revenue"),
    ]
    # case on pm.revenue against percentile_cont(...) within group (order by revenue), a cross-joined CTE
    assert performance["performance_tier"] == [("int_product_metrics", "revenue")]


def test_chained_lineage_reaches_raw_columns(project, lineage):
    _, schemas = project
    assert upstream_raw(lineage, schemas, "dim_customer_segments", "monetary_value") == {
        ("raw_order_items", "quantity"),
        ("raw_order_items", "unit_price"),
        ("raw_orders", "shipping_cost"),
    }
    assert upstream_raw(lineage, schemas, "winback_targets", "first_name") == {("raw_customers", "first_name")}


@pytest.mark.parametrize(
    ("sql", "deps", "expected"),
    [
        (  # union: positional, both sides
            "select order_id as id from raw.raw_orders union all select order_item_id from raw.raw_order_items",
            ("raw_order_items", "raw_orders"),
            {"id": [("raw_order_items", "order_item_id"), ("raw_orders", "order_id")]},
        ),
        (  # correlated scalar subquery: its projection, not its where
            "select (select max(i.unit_price) from raw.raw_order_items as i where i.order_id = o.order_id) as top "
            "from raw.raw_orders as o",
            ("raw_order_items", "raw_orders"),
            {"top": [("raw_order_items", "unit_price")]},
        ),
        (  # lambda parameters are no columns; DuckDB's reuse of an alias in the same select
            "select list_transform([1, 2], lambda x: x * shipping_cost) as costs, costs[1] as first_cost "
            "from raw.raw_orders",
            ("raw_orders",),
            {"costs": [("raw_orders", "shipping_cost")], "first_cost": [("raw_orders", "shipping_cost")]},
        ),
        (  # replace and a derived table; unqualified table name
            "select * exclude (status) replace (shipping_cost * 2 as shipping_cost) "
            "from (select order_id, status, shipping_cost + customer_id as shipping_cost from raw_orders)",
            ("raw_orders",),
            {
                "order_id": [("raw_orders", "order_id")],
                "shipping_cost": [("raw_orders", "customer_id"), ("raw_orders", "shipping_cost")],
            },
        ),
        (  # table functions and values have no upstream node
            "with v(k) as (values (1)) select v.k, r.range as n from v, range(3) as r",
            (),
            {"k": [], "n": []},
        ),
    ],
    ids=["union", "scalar-subquery", "lambda-alias-ref", "replace-derived", "values-range"],
)
def test_sql_shapes(project, sql, deps, expected):
    models, schemas = project
    model = replace(models[0], name="probe", sql=sql, deps=deps)
    result = analyse_lineage([model], schemas)
    assert result.columns == {"probe": expected}
    assert result.problems == {}


def test_a_model_sqlglot_cannot_analyse_maps_to_empty_lists_and_warns(project):
    models, schemas = project
    broken = [
        replace(m, sql="select order_id frm raw.raw_orders where (") if m.name == "stg_orders" else m for m in models
    ]
    with pytest.warns(LineageWarning, match="stg_orders"):
        lineage = column_lineage(broken, schemas)
    assert lineage["stg_orders"] == {c: [] for c in schemas["stg_orders"]}
    assert lineage["stg_customers"]["first_name"] == [("raw_customers", "first_name")]
    result = analyse_lineage(broken, schemas)
    assert list(result.problems) == ["stg_orders"]
    assert "cannot analyse" in result.problems["stg_orders"][0]

    # An ambiguous column is noted and left out; the model's other columns keep their lineage.
    ambiguous = replace(
        models[0],
        name="probe",
        sql="select order_id, status from raw.raw_orders, raw.raw_order_items",
        deps=("raw_order_items", "raw_orders"),
    )
    result = analyse_lineage([ambiguous], schemas)
    assert result.columns["probe"] == {"order_id": [], "status": [("raw_orders", "status")]}
    assert result.problems == {"probe": ["cannot tell which table column order_id comes from"]}


def test_materializations_carry_column_lineage_that_reaches_raw_columns(built):
    wh, result = built
    lineage = {
        e.asset_key.to_user_string(): e.materialization.metadata["dagster/column_lineage"].value
        for e in result.get_asset_materialization_events()
        if "dagster/column_lineage" in e.materialization.metadata
    }
    assert {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()} - set(lineage) == {
        r.name for r in RAW_TABLES
    }

    def deps(asset: str, column: str) -> set[tuple[str, str]]:
        return {(d.asset_key.to_user_string(), d.column_name) for d in lineage[asset].deps_by_column.get(column, [])}

    assert deps("fct_customer_metrics", "monetary_value") == {("int_customer_rfm", "monetary_value")}
    assert deps("int_customer_rfm", "monetary_value") == {("int_customer_order_stats", "order_total_sum")}
    assert ("stg_order_items", "line_total") in deps("int_customer_orders", "order_total")
    assert ("raw_order_items", "quantity") in deps("stg_order_items", "line_total")
    assert "row_hash" not in lineage["fct_customer_metrics_incremental"].deps_by_column
    # What Dagster's open-source UI shows of it (it does not draw dagster/column_lineage): each
    # column's upstream columns in its description, in the definition, before any run.
    schema = wh.defs.resolve_assets_def("fct_customer_metrics").specs_by_key[dg.AssetKey("fct_customer_metrics")]
    columns = {c.name: c.description for c in schema.metadata["dagster/column_schema"].columns}
    assert columns["monetary_value"].endswith("From: int_customer_rfm.monetary_value")
