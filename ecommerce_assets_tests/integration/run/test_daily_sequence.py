"""After any sequence of daily runs every table equals a full rebuild of the same raw data.

One warehouse lives through the sequence a shop's exports go through: new days appended, a late
order for an old date, a day's file replaced with orders that changed status or were corrected,
the catalogue and customers updated, a rerun with nothing new, and a full refresh. After each run
every published table is compared with a second warehouse built from scratch on the same files,
and the run's own `equals_full_rebuild` checks compare whole tables (ECOMMERCE_VERIFY_SLICES=1).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from ecommerce_assets import generate
from ecommerce_assets_tests.conftest import make_warehouse

COMPARED_SCHEMAS = ("intermediate", "marts", "ml", "analyses")
MAINTAINED = (
    "stg_rejected_rows",
    "int_customer_orders",
    "int_customer_order_stats",
    "int_customer_product_sales",
    "customer_product_affinity",
)
DAYS = 3


def split_by_day(source: Path, data: Path, days: int) -> list[str]:
    """The generated files as a shop delivers them: orders, lines and customers in a base file and
    one file per day for the last `days` days; products as one file. Returns the day names."""
    con = duckdb.connect()
    cut = con.execute(
        f"select distinct order_date from '{source}/raw_orders.csv' order by order_date desc limit {days}"
    ).fetchall()
    day_list = sorted(str(d[0]) for d in cut)
    first = day_list[0]
    dated = {
        "raw_orders": "order_date",
        "raw_order_items": f"(select o.order_date from '{source}/raw_orders.csv' as o where o.order_id = t.order_id)",
        "raw_customers": "created_at",
    }
    for table, date in dated.items():
        (data / table).mkdir(parents=True)
        select = f"select t.* from read_csv('{source}/{table}.csv', all_varchar = true) as t"
        con.execute(
            f"copy ({select} where coalesce(try_cast({date} as date) < date '{first}', true)) "
            f"to '{data / table / f'{table}_0000_base.csv'}' (header)"
        )
    shutil.copy(source / "raw_products.csv", data / "raw_products.csv")
    staged = data.parent / "days"
    for day in day_list:
        for table, date in dated.items():
            (staged / table).mkdir(parents=True, exist_ok=True)
            select = f"select t.* from read_csv('{source}/{table}.csv', all_varchar = true) as t"
            con.execute(
                f"copy ({select} where try_cast({date} as date) = date '{day}') "
                f"to '{staged / table / f'{table}_{day}.csv'}' (header)"
            )
    con.close()
    return day_list


def deliver(data: Path, day: str) -> None:
    staged = data.parent / "days"
    for table in ("raw_orders", "raw_order_items", "raw_customers"):
        shutil.copy(staged / table / f"{table}_{day}.csv", data / table / f"{table}_{day}.csv")


def rewrite(path: Path, sql: str) -> None:
    """Replace a delivered CSV file by `sql` over its rows (`t`, all columns as text)."""
    con = duckdb.connect()
    con.execute(f"create table t as select * from read_csv('{path}', all_varchar = true)")
    con.execute(sql)
    con.execute(f"copy t to '{path}' (header)")
    con.close()


def snapshot(db: str) -> dict[str, list[tuple]]:
    """Every published table, rows sorted, without the columns that say when a run built a row
    (timestamps), doubles rounded (DuckDB's parallel sums differ in their last bits)."""
    tables = {}
    with duckdb.connect(db, read_only=True) as con:
        names = con.execute(
            "select schema_name, table_name from duckdb_tables() where schema_name in "
            f"({', '.join(repr(s) for s in COMPARED_SCHEMAS)}) or table_name = 'stg_rejected_rows'"
        ).fetchall()
        for schema, name in names:
            columns = con.execute(f"describe {schema}.{name}").fetchall()
            kept = [
                f"round({c}, 6)" if t in ("DOUBLE", "FLOAT") else c
                for c, t, *_ in columns
                if not t.startswith("TIMESTAMP") and c != "row_hash"
            ]
            tables[f"{schema}.{name}"] = con.execute(
                f"select {', '.join(kept)} from {schema}.{name} order by all"
            ).fetchall()
    return tables


def build(wh, data: Path, **config):
    result = wh.run(run_config={"ops": {"warehouse": {"config": {"data_dir": str(data), **config}}}})
    assert result.success
    failed = [
        f"{e.asset_key.to_user_string()}.{e.check_name}"
        for e in result.get_asset_check_evaluations()
        if not e.passed and e.severity.value == "ERROR"
    ]
    assert not failed
    return {
        e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("shop")
    generate.generate(root / "source", 3000, seed=7, dirty=0.02)
    days = split_by_day(root / "source", root / "data", DAYS)
    wh = make_warehouse(root / "daily", ECOMMERCE_VERIFY_SLICES="1")
    return root, days, wh


def assert_equals_full_rebuild(root: Path, data: Path, step: str) -> None:
    fresh_dir = root / f"fresh_{step}"
    fresh = make_warehouse(fresh_dir)
    build(fresh, data)
    daily_tables = snapshot(str(root / "daily" / "warehouse.duckdb"))
    fresh_tables = snapshot(fresh.settings.duckdb_path)
    assert daily_tables.keys() == fresh_tables.keys()
    different = [t for t in fresh_tables if daily_tables[t] != fresh_tables[t]]
    assert not different, f"after {step}: {different} differ from a full rebuild"
    shutil.rmtree(fresh_dir)


def test_a_sequence_of_daily_runs_equals_a_full_rebuild_after_each(shop):
    root, days, wh = shop
    data = root / "data"

    first = build(wh, data)
    assert "strategy" not in first["int_customer_orders"]  # the first build is a full one
    assert_equals_full_rebuild(root, data, "first build")

    deliver(data, days[0])
    daily = build(wh, data)
    orders = daily["int_customer_orders"]
    assert orders["strategy"] == "delete+insert"
    assert 0 < orders["rows_written"] < orders["dagster/row_count"] / 10  # a day's orders, not the history
    assert_equals_full_rebuild(root, data, "day 1")

    # A day with a late order for an old date, and a line for an order from the history.
    deliver(data, days[1])
    day_orders = data / "raw_orders" / f"raw_orders_{days[1]}.csv"
    rewrite(
        day_orders,
        "insert into t select '99000001', customer_id, '2023-01-15', 'completed', '4.99' from t limit 1",
    )
    rewrite(
        data / "raw_order_items" / f"raw_order_items_{days[1]}.csv",
        "insert into t values ('99000001', '99000001', (select min(product_id) from t), '2', '10.00')",
    )
    build(wh, data)
    assert_equals_full_rebuild(root, data, "day 2 with a late order")

    # Day 1's file delivered again: orders changed status and one was corrected.
    rewrite(
        data / "raw_orders" / f"raw_orders_{days[0]}.csv",
        """
        update t set status = case when status = 'completed' then 'returned' else 'completed' end
        where order_id in (select order_id from t order by order_id limit 5);
        update t set shipping_cost = '12.34' where order_id = (select max(order_id) from t);
        """,
    )
    replaced = build(wh, data)
    assert replaced["int_customer_orders"]["strategy"] == "delete+insert"
    assert_equals_full_rebuild(root, data, "day 1 replaced")

    # The catalogue and the customers change: a price, a product now rejected, a new email, a
    # duplicated customer id.
    rewrite(
        data / "raw_products.csv",
        """
        update t set list_price = '999.99' where product_id = (select min(product_id) from t);
        update t set cost_price = '-1' where product_id = (select max(product_id) from t);
        """,
    )
    base_customers = data / "raw_customers" / "raw_customers_0000_base.csv"
    rewrite(
        base_customers,
        """
        update t set email = 'New.Address@Example.com' where customer_id = (select min(customer_id) from t);
        insert into t select * from t where customer_id = (select max(customer_id) from t);
        """,
    )
    build(wh, data)
    assert_equals_full_rebuild(root, data, "catalogue and customers updated")

    deliver(data, days[2])
    build(wh, data)
    assert_equals_full_rebuild(root, data, "day 3")

    rerun = build(wh, data)  # nothing new: every model stands as published, none is rebuilt
    assert all("unchanged_since" in rerun[m] for m in MAINTAINED + ("fct_customer_metrics", "int_product_metrics"))
    assert_equals_full_rebuild(root, data, "rerun")

    refreshed = build(wh, data, full_refresh=True)
    assert "strategy" not in refreshed["int_customer_orders"]
    assert_equals_full_rebuild(root, data, "full refresh")


def test_every_maintained_model_carries_the_comparison_check(shop):
    _, _, wh = shop
    checks = {(key.asset_key.to_user_string(), key.name) for key in wh.defs.resolve_asset_graph().asset_check_keys}
    assert {(m, "equals_full_rebuild") for m in MAINTAINED} <= checks
