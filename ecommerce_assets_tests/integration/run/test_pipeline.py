"""The whole graph on real DuckDB files: seed values, the fixes to the seed, runs and the lock."""

import datetime as dt
import threading
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import duckdb
import pytest

from ecommerce_assets.defs.resources import DuckDBWarehouse
from ecommerce_assets.ml.churn.assets import TRAINING_ASSETS
from ecommerce_assets.project.models import load_models, resolve_deps
from ecommerce_assets.project.sources import RAW_TABLES
from ecommerce_assets.run.adapter import Project, Selection
from ecommerce_assets.run.duckdb.adapter import DuckDBAdapter
from ecommerce_assets.run.engine import execute, timings_table
from ecommerce_assets.run.options import RunOptions
from ecommerce_assets.run.plan import Task, plan, run_tasks
from ecommerce_assets.run.pump import pump
from ecommerce_assets_tests.conftest import SEED_REFERENCE, assert_equals_reference, make_warehouse

PIPELINE = {
    "raw_customers",
    "raw_orders",
    "raw_order_items",
    "raw_products",
    "stg_customers",
    "stg_orders",
    "stg_order_items",
    "stg_products",
    "int_customer_orders",
    "int_customer_rfm",
    "int_product_metrics",
    "fct_customer_metrics",
    "dim_customer_segments",
    "fct_product_performance",
    "ml_customer_features",
}


def materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def test_whole_graph_materializes_and_every_check_passes(built):
    wh, result = built
    assert result.success
    assert materialized(result) >= PIPELINE
    evaluations = result.get_asset_check_evaluations()
    # Not the weekly training's, nor the scores' (no model is trained on 5 customers, so none are written).
    skipped = {*TRAINING_ASSETS, "churn_scores"}
    daily = [k for k in wh.defs.resolve_asset_graph().asset_check_keys if k.asset_key.path[0] not in skipped]
    assert {e.asset_check_key for e in evaluations} == set(daily)
    assert [e.check_name for e in evaluations if not e.passed] == []


def test_customer_1_by_hand(built):
    wh, _ = built
    # Completed orders 1001 (59.98 + 49.99 + 5.99), 1002 (19.99 + 5.99), 1010 (99.99 + 5.99); 1005 is cancelled.
    row = wh.query(
        "select frequency, monetary_value, recency_days, recency_score, frequency_score, monetary_score,"
        " predicted_clv_12m, churn_risk from marts.fct_customer_metrics where customer_id = 1"
    )[0]
    assert row == (3, Decimal("247.92"), 0, 5, 3, 3, Decimal("371.880"), "Very Low")
    assert (
        wh.scalar("select customer_segment from marts.dim_customer_segments where customer_id = 1") == "Loyal Customers"
    )


def test_products_by_hand(built):
    wh, _ = built
    tiers = dict(wh.query("select product_id, performance_tier from marts.fct_product_performance"))
    # Revenue: 104 = 2 * 99.99 = 199.98 is the largest, 103 = 3 * 19.99 = 59.97 the smallest.
    assert tiers[104] == "Star" and tiers[103] == "Underperformer"
    # 102 and 103 both sold 3 units: the tie goes to the lower product_id.
    units_rank = dict(wh.query("select product_id, units_rank from marts.fct_product_performance"))
    assert (units_rank[102], units_rank[103]) == (2, 3)


def test_analysis_date_defaults_to_the_latest_completed_order(built):
    wh, result = built
    assert wh.scalar("select distinct analysis_date from intermediate.int_customer_rfm") == dt.date(2023, 7, 20)
    # account_age_days is measured to the analysis date, not to the day the test runs.
    assert wh.scalar("select account_age_days from ml.ml_customer_features where customer_id = 1") == 186


@pytest.mark.parametrize("reference", SEED_REFERENCE, ids=lambda p: p.stem)
def test_every_value_equals_the_seed_reference(built, reference: Path):
    wh, _ = built
    schema = wh.scalar("select table_schema from information_schema.tables where table_name = ?", [reference.stem])
    assert_equals_reference(wh.query, f"{schema}.{reference.stem}", reference)


def test_models_show_schema_rows_sql_and_preview_in_the_ui(built):
    wh, result = built
    metadata_of = {
        e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()
    }
    metadata = metadata_of["fct_customer_metrics"]
    assert metadata["dagster/row_count"].value == 5
    columns = {c.name: c for c in metadata["dagster/column_schema"].schema.columns}
    assert columns["predicted_clv_12m"].description.startswith("Predicted customer lifetime value for next 12 months")
    assert columns["email"].description.endswith("From: stg_customers.email")
    assert columns["customer_id"].type == "BIGINT"
    assert not columns["customer_id"].constraints.nullable and columns["customer_id"].constraints.unique
    # The SQL shown runs as it is on the warehouse: no internal `__build` relation, the run's variables set.
    sql = metadata["sql"].value.removeprefix("```sql\n").removesuffix("\n```")
    assert "__build" not in sql
    # All but updated_at, the run's start time, which the SQL shown sets to now().
    assert sorted(r[:-1] for r in wh.query(sql)) == sorted(r[:-1] for r in wh.query("from marts.fct_customer_metrics"))
    assert "| customer_id |" in metadata["preview"].value
    assert metadata_of["int_customer_rfm"]["analysis_date"].value == "2023-07-20"


# An edge-case export: messy text, invalid emails, customers without orders, an order without
# items, a zero-quantity line, a free product and an unsold one.
EDGE_DATA = {
    "raw_customers": """customer_id,email,first_name,last_name,country,created_at
1, John.Doe@Email.COM ,  mary-JANE ,o'neil,us,2022-11-01
2,not-an-email,Jane,Smith,UK,2023-02-20
3,,Bob,Jones,US,2023-07-01
4,old@x.com,Al,West,CA,2022-01-01
""",
    "raw_orders": """order_id,customer_id,order_date,status,shipping_cost
1001,1,2022-12-01, Completed ,5.99
1002,2,2023-03-01,completed,7.99
1003,1,2023-07-20,COMPLETED,4.00
1004,2,2023-05-01,cancelled,0.00
1005,1,2023-07-10,completed,1.00
""",
    "raw_order_items": """order_item_id,order_id,product_id,quantity,unit_price
1,1001,101,2,10.00
2,1002,102,1,50.00
3,1004,101,1,10.00
4,1001,102,0,50.00
5,1005,101,1,10.00
""",
    "raw_products": """product_id,product_name,category,cost_price,list_price
101, Widget , gadgets ,5.00,10.00
102,Free thing,gadgets,0.00,0.00
103,Unsold,tools,1.00,2.00
""",
}


def write_data(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / f"{name}.csv").write_text(text)
    return directory


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    """The edge-case data built once (read-only for tests)."""
    tmp_path = tmp_path_factory.mktemp("edge")
    wh = make_warehouse(tmp_path, data_dir=write_data(tmp_path / "data", EDGE_DATA))
    return wh, wh.run()


def test_edge_cases_build_with_only_warnings(edge):
    wh, result = edge
    assert result.success
    failed = {
        (e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations() if not e.passed
    }
    assert set(failed) == {
        ("stg_customers", "not_null_email"),  # customers 2 and 3, kept and flagged
        ("stg_rejected_rows", "rows_rejected"),  # line 4, quantity 0
        ("stg_products", "prices_positive"),  # product 102 is free
        ("int_customer_orders", "completed_orders_have_items"),  # order 1003
    }
    assert all(e.severity == dg.AssetCheckSeverity.WARN for e in failed.values())
    assert failed["stg_customers", "not_null_email"].metadata["failing_rows"].value == 2


def test_cleaning_uses_the_cleaned_fields(edge):
    wh, _ = edge
    assert wh.query(
        "select email, first_name, last_name, country, is_valid_email from staging.stg_customers where customer_id = 1"
    ) == [("john.doe@email.com", "Mary-Jane", "O'Neil", "US", True)]
    assert wh.query(
        "select customer_id, email, is_valid_email from staging.stg_customers where customer_id in (2, 3) order by 1"
    ) == [(2, None, False), (3, None, False)]
    # ' Completed ' and 'COMPLETED' count as completed.
    assert wh.query("select order_id from intermediate.int_customer_orders order by 1") == [
        (1001,),
        (1002,),
        (1003,),
        (1005,),
    ]
    assert wh.scalar("select category from staging.stg_products where product_id = 101") == "Gadgets"


def test_order_without_items_counts_its_shipping(edge):
    wh, _ = edge
    assert wh.query(
        "select order_subtotal, order_total, items_count from intermediate.int_customer_orders where order_id = 1003"
    ) == [(Decimal("0.00"), Decimal("4.00"), 0)]


def test_customer_with_invalid_email_keeps_its_revenue_everywhere(edge):
    wh, _ = edge
    # Customer 2: order 1002 = 50.00 + 7.99; the cancelled 1004 does not count.
    assert wh.scalar("select monetary_value from marts.fct_customer_metrics where customer_id = 2") == Decimal("57.99")
    assert wh.scalar("select monetary_value from marts.dim_customer_segments where customer_id = 2") == Decimal("57.99")
    assert wh.scalar("select monetary_value from ml.ml_customer_features where customer_id = 2") == Decimal("57.99")
    total = Decimal("25.99") + Decimal("57.99") + Decimal("4.00") + Decimal("11.00")
    assert wh.scalar("select sum(monetary_value) from marts.fct_customer_metrics") == total


def test_customers_without_orders_get_zero_metrics_and_a_sensible_risk(edge):
    wh, _ = edge
    rows = wh.query(
        "select m.customer_id, m.frequency, m.monetary_value, m.avg_order_value, m.recency_days, m.churn_risk,"
        " m.predicted_clv_12m, s.customer_segment"
        " from marts.fct_customer_metrics m join marts.dim_customer_segments s using (customer_id)"
        " where m.customer_id in (3, 4) order by 1"
    )
    # Recency counts from sign-up: 2023-07-01 -> 2023-07-20 is 19 days; 2022-01-01 -> 2023-07-20 is 565.
    assert rows == [
        (3, 0, 0, 0, 19, "Low", 0, "New Customers"),
        (4, 0, 0, 0, 565, "High", 0, "Lost"),
    ]
    assert wh.query(
        "select is_active_last_30d, revenue_per_order, orders_per_month from ml.ml_customer_features where customer_id = 3"
    ) == [(0, 0, 0)]


def test_divisions_never_give_nan_or_inf(edge):
    wh, _ = edge
    assert wh.scalar("select profit_margin_pct from staging.stg_products where product_id = 102") is None
    assert wh.query(
        "select category_revenue_share, performance_tier from marts.fct_product_performance where product_id = 103"
    ) == [(None, "Underperformer")]
    # Customer 1 has 3 orders: two in the last 90 days, none in the 90 before: the ratio is undefined.
    assert wh.scalar("select order_trend_ratio from ml.ml_customer_features where customer_id = 1") is None


def test_analysis_date_from_run_config_moves_every_date_measure(tmp_path):
    wh = make_warehouse(tmp_path, data_dir=write_data(tmp_path / "data", EDGE_DATA))
    result = wh.run(run_config={"ops": {"warehouse": {"config": {"analysis_date": "2023-08-19"}}}})
    assert result.success
    assert wh.query("select recency_days, analysis_date from intermediate.int_customer_rfm where customer_id = 1") == [
        (30, dt.date(2023, 8, 19))
    ]
    # 2022-11-01 -> 2023-08-19; last 90 days from 2023-05-21: orders of 07-10 and 07-20.
    assert wh.query(
        "select account_age_days, is_active_last_30d from ml.ml_customer_features where customer_id = 1"
    ) == [(291, 1)]


def test_bad_analysis_date_fails_with_a_clear_message(warehouse):
    result = warehouse.run(run_config={"ops": {"warehouse": {"config": {"analysis_date": "20-07-2023"}}}})
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "analysis_date='20-07-2023' is not a YYYY-MM-DD date" in str(failure.step_failure_data.error.message)


def test_bad_concurrency_fails_with_a_clear_message(warehouse):
    result = warehouse.run(run_config={"ops": {"warehouse": {"config": {"concurrency": -1}}}})
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "run config concurrency=-1: use 1 or more" in str(failure.step_failure_data.error.message)


def test_selection_by_tag_runs_only_those_assets(built, tmp_path):
    wh, _ = built
    result = wh.run(selection=sorted(dg.AssetSelection.from_string("tag:ml").resolve(wh.defs.resolve_asset_graph())))
    assert result.success
    assert materialized(result) == {"ml_customer_features"}
    assert {e.asset_key.to_user_string() for e in result.get_asset_check_evaluations()} == {"ml_customer_features"}


def test_two_runs_back_to_back_both_succeed_and_agree(warehouse):
    first = warehouse.run()
    snapshot = warehouse.query("select * exclude (updated_at) from marts.fct_customer_metrics order by customer_id")
    second = warehouse.run()
    assert first.success and second.success
    assert (
        warehouse.query("select * exclude (updated_at) from marts.fct_customer_metrics order by customer_id")
        == snapshot
    )


def test_schedule_run_request_materializes_everything(warehouse):
    schedule = warehouse.defs.resolve_schedule_def("daily_warehouse")
    with dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 11, 25, 6)) as context:
        (request,) = schedule.evaluate_tick(context).run_requests
    result = warehouse.defs.resolve_job_def(schedule.job_name).execute_in_process(
        run_config=request.run_config, tags=request.tags, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    assert materialized(result) >= PIPELINE


def test_a_second_writer_waits_for_the_first_instead_of_failing(tmp_path):
    resource = DuckDBWarehouse(database=str(tmp_path / "lock.duckdb"))
    order, a_in, release, b_out = [], threading.Event(), threading.Event(), threading.Event()

    def writer(name: str, entered: threading.Event, leave: threading.Event) -> None:
        with resource.get_connection() as con:
            order.append(f"{name} in")
            con.execute(f"create or replace table t_{name} as select 1 as x")
            entered.set()
            assert leave.wait(10)
            order.append(f"{name} out")

    done = threading.Event()
    done.set()
    first = threading.Thread(target=writer, args=("a", a_in, release))
    first.start()
    assert a_in.wait(10)
    second = threading.Thread(target=writer, args=("b", b_out, done))
    second.start()
    assert not b_out.wait(0.5)  # b is still waiting for a's lock
    release.set()
    first.join(), second.join()
    assert order == ["a in", "a out", "b in", "b out"]


# --- the step's worker thread -----------------------------------------------------------------

QUIET = SimpleNamespace(info=lambda m: None, warning=lambda m: None, error=lambda m: None)


def _work(built: list, fail_after: int | None = None):
    def work(log, stop):
        for i in range(100):
            if i == fail_after:
                raise ValueError(f"statement {i} failed")
            built.append(i)
            log.info(f"built {i}")
            yield i
            if fail_after is None:
                stop.wait(10)  # until the step is terminated
                return

    return work


def test_the_worker_threads_events_and_logs_arrive_in_order_and_its_errors_are_raised_here():
    built, logged = [], []
    log = SimpleNamespace(info=logged.append, warning=logged.append, error=logged.append)
    events = pump(_work(built, fail_after=3), log, interrupt=lambda: None)
    assert [next(events) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="statement 3 failed"):
        next(events)
    assert logged == ["built 0", "built 1", "built 2"]


def test_a_terminated_step_interrupts_its_worker_and_builds_nothing_more():
    built, interrupted = [], threading.Event()
    events = pump(_work(built), QUIET, interrupt=interrupted.set)
    assert next(events) == 0
    events.close()  # what Dagster does to the step's generator when the run is terminated
    assert interrupted.is_set()
    assert built == [0]
    assert not [t for t in threading.enumerate() if t.name == "warehouse-sql"]


def _models():
    return resolve_deps(load_models(), {r.name: "raw" for r in RAW_TABLES})


def test_builds_wait_for_their_parents_blocking_checks_and_checks_for_the_tables_they_compare_with():
    models = _models()
    every_check = {(m.name, c.name) for m in models for c in m.checks}
    tasks = {(t.kind, t.node.name): t for t in plan([*RAW_TABLES, *models], every_check)}

    def after(kind, name):
        return {(t.kind, t.node.name) for t in tasks[kind, name].after}

    assert after("build", "int_customer_orders") == {
        ("build", "stg_orders"),
        ("check", "stg_orders"),
        ("build", "stg_order_items"),
        ("check", "stg_order_items"),
    }
    # relationships_customer_id compares with stg_customers
    assert after("check", "stg_orders") == {("build", "stg_orders"), ("build", "stg_customers")}
    # without its checks selected, a model's children wait for its build only
    tasks = {(t.kind, t.node.name): t for t in plan([*RAW_TABLES, *models], set())}
    assert after("build", "int_customer_orders") == {("build", "stg_orders"), ("build", "stg_order_items")}


def test_the_scheduler_never_runs_more_than_its_concurrency_and_respects_every_wait():
    a, b, c, d = (Task("build", SimpleNamespace(name=n)) for n in "abcd")
    c.after, d.after = {a, b}, {c}
    running, most, finished = set(), [0], []
    lock = threading.Lock()
    both_running = threading.Barrier(2, timeout=10)  # a and b must be able to run side by side

    def start(task):
        def work():
            with lock:
                running.add(task.node.name)
                most[0] = max(most[0], len(running))
            if task in (a, b):
                both_running.wait()
            with lock:
                running.discard(task.node.name)

        return work

    def finish(task, future):
        future.result()
        finished.append(task.node.name)
        yield task.node.name

    assert list(run_tasks([a, b, c, d], 2, start, finish, threading.Event())) == finished
    assert most[0] == 2 and finished[2:] == ["c", "d"]


def test_one_statement_at_a_time_builds_in_dependency_order_and_the_same_tables(tmp_path, built):
    wh = make_warehouse(tmp_path)
    result = wh.run(run_config={"ops": {"warehouse": {"config": {"concurrency": 1}}}})
    assert result.success
    order = [e.asset_key.to_user_string() for e in result.get_asset_materialization_events()]
    assert sorted(order) == sorted([r.name for r in RAW_TABLES] + [m.name for m in _models()])
    for model in _models():  # each after everything it reads
        assert all(order.index(dep) < order.index(model.name) for dep in model.deps), model.name
    concurrent, _ = built
    tables = wh.query("select table_schema, table_name from information_schema.tables where table_schema <> 'raw'")
    assert len(tables) == len(_models())
    for schema, table in tables:
        columns = [
            c
            for (c,) in wh.query(  # timestamps are the time of each run
                "select column_name from information_schema.columns"
                " where table_schema = ? and table_name = ? and data_type not like 'TIMESTAMP%'",
                [schema, table],
            )
        ]
        sql = f"select {', '.join(columns)} from {schema}.{table} order by all"
        assert wh.query(sql) == concurrent.query(sql), table


def test_a_terminated_run_interrupts_every_worker_and_publishes_nothing(tmp_path):
    # One quick model, then two that would take ~20 s each: both run, one per worker, when the
    # run is stopped (what closing the pump does on terminate), and neither may finish. The quick
    # one was built, but a stopped run publishes nothing and leaves nothing behind.
    marts = tmp_path / "sql" / "marts"
    marts.mkdir(parents=True)
    (marts / "a_quick.sql").write_text("select 1 as x")
    for name in ("slow_b", "slow_c"):
        (marts / f"{name}.sql").write_text(
            f"with s as (select started('{name}') as x)\n"
            "select sum(hash(i)) + any_value(x) as s from range(6000000000) as t(i), s"
        )
    models = resolve_deps(load_models(tmp_path / "sql"), {})
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    started = {"slow_b": threading.Event(), "slow_c": threading.Event()}
    con.create_function("started", lambda name: started[name].set() or 0, [str], int, side_effects=True)
    adapter = DuckDBAdapter(con, RunOptions(data_dir=tmp_path, output_dir=tmp_path, concurrency=2))
    stop = threading.Event()
    events: list = []
    worker = threading.Thread(
        target=lambda: events.extend(execute(adapter, Project(models), Selection.everything(models), QUIET, stop))
    )
    worker.start()
    assert all(e.wait(10) for e in started.values())  # both slow statements are running
    stop.set()
    adapter.interrupt()
    worker.join(30)
    assert not worker.is_alive() and events == []
    relations = {t for (t,) in con.execute("select table_name from information_schema.tables").fetchall()}
    assert relations == {"_loaded_files", "_published", "_checked"}
    assert len(adapter.run.cursors) == 2  # one cursor per worker
    adapter.close()
    con.close()


def test_the_timings_table_aligns_rows_build_and_check_seconds_with_totals():
    table = timings_table({"raw.raw_orders": [10, 0.15, None], "marts.fct_customer_metrics": [1_000_000, 2.5, 0.25]})
    assert table.splitlines() == [
        "table                               rows   build s  checks s",
        "raw.raw_orders                        10      0.15         -",
        "marts.fct_customer_metrics     1,000,000      2.50      0.25",
        "total                                         2.65      0.25",
    ]


def test_the_launchpad_shows_every_run_config_field_with_its_default(warehouse):
    job = warehouse.defs.resolve_job_def("warehouse_job")
    config = dg.validate_run_config(job, {})["ops"]["warehouse"]["config"]
    assert config == {"analysis_date": "", "full_refresh": False, "data_dir": "", "concurrency": 0}
