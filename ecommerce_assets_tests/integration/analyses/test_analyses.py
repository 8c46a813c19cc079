"""The `analyses` group: results, result tables, charts and exports, on real DuckDB files.

Expected numbers are worked out by hand from data/*.csv. Analysis date = the last completed order,
2023-07-20. Completed order totals (items + shipping):
  customer 1: 1001 115.96, 1002 25.98, 1010 105.98 -> 247.92, 3 orders, recency 0    -> R5 F3 M3
  customer 2: 1003 97.96, 1006 107.97             -> 205.93, 2 orders, recency 56   -> R4 F2 M3
  customer 3: 1004 105.98, 1008 45.97             -> 151.95, 2 orders, recency 35   -> R4 F2 M2
  customer 4: 1007 159.98                         -> 159.98, 1 order,  recency 49   -> R4 F1 M2
  customer 5: 1009 35.98                          ->  35.98, 1 order,  recency 19   -> R5 F1 M1
(order 1005 is cancelled.) Segments: 1 Loyal Customers, 2 Big Spenders, 3-5 New Customers; all churn
risk Very Low (every recency <= 90). Predicted CLV: RFM total 11 and 9 -> x1.5 (371.88, 308.895),
8 and 7 -> x1.2 (182.34, 191.976, 43.176).
Products (revenue in completed orders): 104 Monitor 199.98, 101 Wireless Mouse 179.94, 105 Laptop
Stand 149.99, 102 Keyboard 149.97, 103 USB Cable 59.97. Revenue percentiles: p80 = 179.94 + 0.2 *
20.04 = 183.948 -> 104 Star; p50 = 149.99 -> 101, 105 Performer.
"""

from __future__ import annotations

import base64
import struct
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from ecommerce_assets.analyses import charts as analyses
from ecommerce_assets.defs.events import materialization
from ecommerce_assets.errors import ModelError
from ecommerce_assets.project.models import load_models
from ecommerce_assets.run.adapter import Built
from ecommerce_assets.run.duckdb.build import export, table_stats
from ecommerce_assets.run.duckdb.context import Run
from ecommerce_assets.run.duckdb.publish import publish
from ecommerce_assets.run.options import RunOptions
from ecommerce_assets_tests.conftest import make_warehouse

ANALYSES = {
    "segment_distribution",
    "churn_risk_by_segment",
    "top_products_by_tier",
    "rfm_score_grid",
    "winback_targets",
    "marketing_budget_allocation",
    "customer_product_affinity",
    "ml_features_export",
}
CHARTS = {  # asset -> (file name, title, figure size in inches)
    "rfm_score_grid": ("rfm_heatmap", "Customers per RFM cell", analyses.RFM_HEATMAP_SIZE),
    "segment_distribution": ("segment_value", "Revenue and predicted CLV by segment", analyses.SEGMENT_CHART_SIZE),
    "top_products_by_tier": (
        "revenue_by_tier_and_category",
        "Revenue by product performance tier",
        analyses.TIER_CHART_SIZE,
    ),
}
D = Decimal


def _materializations(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {
        e.materialization.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }


@pytest.fixture(scope="module")
def materialized(built):
    wh, result = built
    assert result.success
    return wh, _materializations(result)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# --- the group ------------------------------------------------------------------------------


def test_analyses_are_assets_of_their_own_group(built):
    wh, result = built
    graph = wh.defs.resolve_asset_graph()
    in_group = {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).group_name == "analyses"}
    assert in_group == ANALYSES
    for name in ANALYSES:
        assert "analyses" in graph.get(dg.AssetKey(name)).tags
    assert set(_materializations(result)) >= ANALYSES
    checks = [(c.asset_key.to_user_string(), c.check_name, c.passed) for c in result.get_asset_check_evaluations()]
    analysis_checks = [c for c in checks if c[0] in ANALYSES]
    declared = {(m.name, c.name) for m in load_models() if m.layer == "analyses" for c in m.checks}
    assert {c[:2] for c in analysis_checks} == declared  # every check of sql/analyses/*.sql ran ...
    assert [c for c in analysis_checks if not c[2]] == []  # ... and passed


def test_every_analysis_shows_its_result_as_a_markdown_table(materialized):
    wh, metadata = materialized
    for name in ANALYSES:
        md = metadata[name]["preview"].value
        header = md.splitlines()[0]
        columns = [r[0] for r in wh.query(f"select column_name from (describe analyses.{name})")]
        assert header == "| " + " | ".join(columns) + " |", name
        rows = metadata[name]["dagster/row_count"].value
        body = [line for line in md.splitlines()[2:] if line.startswith("| ")]
        assert len(body) == rows, name  # all <= 50 on the bundled data
    assert (
        "| Loyal Customers | 1 | 247.92 | 247.92 | 371.88 | 371.88 |"
        in metadata["segment_distribution"]["preview"].value
    )
    assert "_no rows_" in metadata["winback_targets"]["preview"].value


def test_result_table_shows_the_first_50_rows_and_the_total(tmp_path):
    model = next(m for m in load_models() if m.name == "customer_product_affinity")
    con = duckdb.connect()
    con.execute("create schema analyses")
    con.execute("create table analyses.customer_product_affinity as select range as customer_id from range(120)")
    stats = table_stats(con, model.table, model.layer)
    assert (stats.rows, stats.preview_columns) == (120, ["customer_id"])
    assert stats.preview == [(i,) for i in range(50)]
    md = materialization(Built(model, {}, stats, 0.1), dg.AssetKey(model.name)).metadata["preview"].value
    assert md.splitlines()[-1] == "_50 of 120 rows_"


# --- each analysis on the bundled data ------------------------------------------------------


def test_segment_distribution(built):
    wh, _ = built
    assert wh.query("select * from analyses.segment_distribution") == [
        # segment, customers, revenue, avg value, avg predicted CLV, total predicted CLV
        ("New Customers", 3, D("347.91"), D("115.97"), D("139.16"), D("417.49")),  # 417.492 / 3
        ("Loyal Customers", 1, D("247.92"), D("247.92"), D("371.88"), D("371.88")),
        ("Big Spenders", 1, D("205.93"), D("205.93"), D("308.90"), D("308.90")),  # 308.895 rounds up
    ]


def test_churn_risk_by_segment(built):
    wh, _ = built
    rows = wh.query("select * from analyses.churn_risk_by_segment")
    assert rows == [
        ("Big Spenders", "Very Low", 1, D("205.93"), 56.0),
        ("Loyal Customers", "Very Low", 1, D("247.92"), 0.0),
        ("New Customers", "Very Low", 3, D("115.97"), pytest.approx(34.3)),  # (35 + 49 + 19) / 3
    ]


def test_top_products_by_tier(built):
    wh, _ = built
    assert wh.query("select * from analyses.top_products_by_tier") == [
        # id, tier, category, name, revenue, profit, margin %, units
        (104, "Star", "Electronics", "Monitor", D("199.98"), D("99.98"), D("49.99"), 2),  # 199.98 - 2 * 50
        (101, "Performer", "Electronics", "Wireless Mouse", D("179.94"), D("89.94"), D("49.98"), 6),  # - 6 * 15
        (105, "Performer", "Accessories", "Laptop Stand", D("149.99"), D("119.99"), D("80.00"), 1),  # - 30
    ]


def test_rfm_score_grid(built):
    wh, _ = built
    assert wh.query("select * from analyses.rfm_score_grid") == [
        (5, 3, 1, D("247.92")),  # customer 1
        (5, 1, 1, D("35.98")),  # customer 5
        (4, 2, 2, D("178.94")),  # customers 2 and 3: (205.93 + 151.95) / 2
        (4, 1, 1, D("159.98")),  # customer 4
    ]


def test_marketing_budget_allocation(built):
    wh, _ = built
    assert wh.query("select * from analyses.marketing_budget_allocation") == [
        # segment, customers, predicted value, avg CLV, budget (10%), budget per customer
        ("New Customers", 3, D("417.49"), D("139.16"), D("41.75"), D("13.92")),  # 41.7492, 41.7492 / 3
        ("Loyal Customers", 1, D("371.88"), D("371.88"), D("37.19"), D("37.19")),  # 37.188
        ("Big Spenders", 1, D("308.90"), D("308.90"), D("30.89"), D("30.89")),  # 30.8895
    ]


def test_customer_product_affinity(built):
    wh, _ = built
    assert wh.query("select * from analyses.customer_product_affinity order by customer_id, total_spent desc") == [
        (1, 104, 1, D("99.99")),
        (1, 101, 1, D("59.98")),
        (1, 102, 1, D("49.99")),
        (1, 103, 1, D("19.99")),
        (2, 102, 1, D("99.98")),
        (2, 101, 1, D("89.97")),
        (3, 104, 1, D("99.99")),
        (3, 103, 1, D("39.98")),
        (4, 105, 1, D("149.99")),
        (5, 101, 1, D("29.99")),
    ]


def test_winback_targets_empty_on_bundled_data(materialized):
    wh, metadata = materialized
    # Nobody is At Risk / Cant Lose Them (every recency score is 4 or 5) nor at Medium/High churn risk.
    assert wh.scalar("select count(*) from analyses.winback_targets") == 0
    csv = Path(metadata["winback_targets"]["export_path"].value)
    assert csv == Path(wh.settings.output_dir) / "exports" / "winback_targets.csv"
    assert csv.read_text().splitlines() == [
        "customer_id,email,first_name,last_name,customer_segment,monetary_value,recency_days,churn_risk,recommended_action"
    ]
    assert metadata["winback_targets"]["export_rows"].value == 0


# --- charts and exports ---------------------------------------------------------------------


def test_charts_are_pngs_of_the_expected_size_shown_first_with_their_numbers_inline(materialized):
    wh, metadata = materialized
    for asset, (chart, title, (width_in, height_in)) in CHARTS.items():
        assert next(iter(metadata[asset])) == title  # the first entry on the asset page
        numbers = metadata[asset][title].value
        assert numbers.startswith("| ") and len(numbers) < analyses.INLINE_MARKDOWN  # rendered as it is
        path = Path(metadata[asset][f"{title}: PNG file"].value)
        assert path == Path(wh.settings.output_dir) / "charts" / f"{chart}.png"
        data = path.read_bytes()
        assert _png_size(data) == (round(width_in * analyses.DPI), round(height_in * analyses.DPI))
        md = metadata[asset][f"{title}: chart"].value
        prefix = f"![{chart}](data:image/png;base64,"
        assert md.startswith(prefix) and md.endswith(")")
        assert base64.b64decode(md[len(prefix) : -1]) == data
    assert "| 2 | 0 | 0 | 0 | 2 | 0 |" in metadata["rfm_score_grid"]["Customers per RFM cell"].value
    assert not list((Path(wh.settings.output_dir) / "charts").glob(".*.tmp"))


def test_a_long_chart_table_is_cut_to_render_inline():
    rows = [["segment", "customers"], *([f"segment {i}", f"{i:,}"] for i in range(200))]
    md = analyses.inline_table(rows)
    assert len(md) < analyses.INLINE_MARKDOWN and md.endswith("more rows in the chart_")
    assert md.splitlines()[2] == "| segment 0 | 0 |"


def test_ml_features_parquet_export_matches_the_table(materialized):
    wh, metadata = materialized
    path = Path(metadata["ml_features_export"]["export_path"].value)
    assert path == Path(wh.settings.output_dir) / "exports" / "ml_customer_features.parquet"
    assert metadata["ml_features_export"]["export_rows"].value == 5
    # Without the build timestamp: another test may rebuild the feature table alone on `built`.
    table = wh.query("select * exclude (feature_generated_at) from ml.ml_customer_features order by customer_id")
    exported = "select * exclude (feature_generated_at) from read_parquet(?) order by customer_id"
    assert wh.query(exported, [str(path)]) == table
    assert len(table) == 5


def _write_csvs(data_dir: Path, files: dict[str, list[str]]) -> Path:
    data_dir.mkdir()
    for name, lines in files.items():
        (data_dir / f"{name}.csv").write_text("\n".join(lines) + "\n")
    return data_dir


def test_winback_targets_and_csv_on_a_dataset_with_lapsed_customers(tmp_path):
    """Analysis date 2024-12-31 (customer 3's order).

    1: 3 orders worth 300, last 2024-08-01 (152 days) -> R2 F3 M4 At Risk, Medium risk: a target.
    2: invalid email, 1 order worth 250 on 2024-05-01 (244 days) -> R1 F1 M3 Cant Lose Them, High:
       a target, but left out of the CSV for want of an email.
    4: like 2 but worth exactly 200 -> not more than 200: no target.
    5: 1 order worth 400 on 2024-09-15 (107 days) -> Cant Lose Them but Low risk: no target.
    Customer 1's cancelled order (5 x 201) counts in no analysis.
    """
    data_dir = _write_csvs(
        tmp_path / "data",
        {
            "raw_customers": [
                "customer_id,email,first_name,last_name,country,created_at",
                "1,ann@example.com,Ann,Lee,US,2024-01-10",
                "2,not-an-email,Bo,Kim,UK,2024-01-10",
                "3,cy@example.com,Cy,Ray,US,2024-01-10",
                "4,di@example.com,Di,Fox,CA,2024-01-10",
                "5,ed@example.com,Ed,Poe,US,2024-01-10",
            ],
            "raw_orders": [
                "order_id,customer_id,order_date,status,shipping_cost",
                "1,1,2024-06-01,completed,0.00",
                "2,1,2024-07-01,completed,0.00",
                "3,1,2024-08-01,completed,0.00",
                "4,2,2024-05-01,completed,10.00",
                "5,3,2024-12-31,completed,5.00",
                "6,1,2024-12-01,cancelled,0.00",
                "7,4,2024-05-01,completed,5.00",
                "8,5,2024-09-15,completed,0.00",
            ],
            "raw_order_items": [
                "order_item_id,order_id,product_id,quantity,unit_price",
                "1,1,201,1,100.00",
                "2,2,201,1,100.00",
                "3,3,202,2,50.00",
                "4,4,202,3,80.00",
                "5,5,202,1,45.00",
                "6,6,201,5,100.00",
                "7,7,201,1,195.00",
                "8,8,201,4,100.00",
            ],
            "raw_products": [
                "product_id,product_name,category,cost_price,list_price",
                "201,Widget,Gadgets,10.00,100.00",
                "202,Gizmo,Gadgets,20.00,50.00",
            ],
        },
    )
    wh = make_warehouse(tmp_path, data_dir=data_dir)
    # Only what these assertions read: a third of the events of a full run, so a third of the time.
    selection = dg.AssetSelection.groups("raw", "staging", "intermediate", "marts") | dg.AssetSelection.assets(
        "winback_targets", "customer_product_affinity", "segment_distribution"
    )
    result = wh.run(selection=list(selection.resolve(wh.defs.resolve_asset_graph())))
    assert result.success
    metadata = _materializations(result)

    action = "Win-back campaign, special discount"
    assert wh.query("select * from analyses.winback_targets") == [
        (1, "ann@example.com", "Ann", "Lee", "At Risk", D("300.00"), 152, "Medium", action),
        (2, None, "Bo", "Kim", "Cant Lose Them", D("250.00"), 244, "High", action),
    ]
    csv = Path(metadata["winback_targets"]["export_path"].value)
    assert metadata["winback_targets"]["export_rows"].value == 1
    exported = wh.query("select customer_id, email, monetary_value::decimal(18, 2) from read_csv(?)", [str(csv)])
    assert exported == [(1, "ann@example.com", D("300.00"))]
    assert csv.read_text().splitlines()[0].startswith("customer_id,email,")

    assert wh.query("select * from analyses.customer_product_affinity order by customer_id, total_spent desc") == [
        (1, 201, 2, D("200.00")),  # orders 1 and 2; cancelled order 6 left out
        (1, 202, 1, D("100.00")),
        (2, 202, 1, D("240.00")),
        (3, 202, 1, D("45.00")),
        (4, 201, 1, D("195.00")),
        (5, 201, 1, D("400.00")),
    ]
    assert wh.query("select customer_segment, customer_count from analyses.segment_distribution") == [
        ("Cant Lose Them", 3),  # customers 2, 4, 5: 250 + 200 + 400
        ("At Risk", 1),
        ("New Customers", 1),
    ]


# --- the hook machinery ---------------------------------------------------------------------


def _run(con, output_dir: Path) -> Run:
    return Run(con, RunOptions(data_dir=output_dir, output_dir=output_dir))


def test_charts_cope_with_empty_tables(tmp_path):
    models = {m.name: m for m in load_models()}
    con = duckdb.connect()
    con.execute("""
        create schema analyses;
        create schema marts;
        create table analyses.rfm_score_grid (
            recency_score int, frequency_score int, customer_count bigint, avg_value decimal(18, 2));
        create table analyses.segment_distribution (
            customer_segment varchar, customer_count bigint, total_revenue decimal(18, 2),
            total_predicted_value decimal(18, 2));
        create table marts.fct_product_performance (
            performance_tier varchar, category varchar, revenue decimal(18, 2));
    """)
    for asset, (_, title, (width_in, height_in)) in CHARTS.items():
        hook = analyses.EXTRAS[asset][0]
        run = _run(con, tmp_path)
        metadata = hook(con, models[asset], run)
        publish(con, run.publication, [asset], run.run_id, {})
        data = Path(metadata[f"{title}: PNG file"].value).read_bytes()
        assert _png_size(data) == (round(width_in * analyses.DPI), round(height_in * analyses.DPI))


def test_an_unwritable_output_dir_fails_that_asset_with_a_model_error(tmp_path):
    models = load_models()
    con = duckdb.connect()
    con.execute("create schema analyses")
    con.execute("create table analyses.winback_targets as select 1 customer_id, 'a@b.c' email, 1.0 monetary_value")
    blocker = tmp_path / "output"
    blocker.write_text("a file where the output directory should be")
    model = next(m for m in models if m.name == "winback_targets")
    with pytest.raises(ModelError, match="winback_targets.sql: export winback_targets.csv: NotADirectoryError"):
        export(_run(con, blocker), con, model, "analyses.winback_targets")


def test_extras_for_an_unknown_model_are_rejected():
    with pytest.raises(ModelError, match="no_such_model"):
        analyses.after_build(load_models(), {"no_such_model": (analyses.segment_chart,)})
