"""fct_customer_metrics_incremental equals a full rebuild after every kind of change."""

import shutil

import dagster as dg
import duckdb
import pytest

from ecommerce_assets_tests.conftest import DATA, make_warehouse

INCREMENTAL = "marts.fct_customer_metrics_incremental"


def run(wh, data_dir, **config):
    # The incremental model and everything upstream (fct_customer_metrics included).
    keys = sorted(
        dg.AssetSelection.from_string("*fct_customer_metrics_incremental").resolve(wh.defs.resolve_asset_graph())
    )
    result = wh.run(
        selection=keys, run_config={"ops": {"warehouse": {"config": {"data_dir": str(data_dir), **config}}}}
    )
    assert result.success
    metadata = next(
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "fct_customer_metrics_incremental"
    )
    if "unchanged_since" in metadata:  # nothing it reads changed since its last publish: kept as it is
        return {"unchanged": True}
    return {k: metadata[k].value for k in ("rows_inserted", "rows_updated", "rows_deleted") if k in metadata}


def assert_equals_full_rebuild(wh):
    incremental = wh.query(f"select * exclude (row_hash, updated_at) from {INCREMENTAL} order by customer_id")
    rebuilt = wh.query("select * exclude (updated_at) from marts.fct_customer_metrics order by customer_id")
    assert incremental == rebuilt


def updated_at(wh) -> dict:
    return dict(wh.query(f"select customer_id, updated_at from {INCREMENTAL}"))


def append(path, lines):
    with path.open("a") as f:
        f.write("".join(line + "\n" for line in lines))


@pytest.fixture
def setup(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(DATA, data)
    wh = make_warehouse(tmp_path)
    assert run(wh, data) == {}  # first run builds from scratch
    assert_equals_full_rebuild(wh)
    return wh, data


def test_second_run_on_the_same_data_changes_nothing(setup):
    wh, data = setup
    before = updated_at(wh)
    assert run(wh, data) == {"unchanged": True}
    assert updated_at(wh) == before
    assert_equals_full_rebuild(wh)


def test_new_customers_new_orders_of_old_customers_and_changed_profiles_are_merged(setup):
    wh, data = setup
    before = updated_at(wh)
    # Dated before the latest order (2023-07-20), so the analysis date and others' recency stay put.
    append(data / "raw_customers.csv", ["6,dana.new@email.com,Dana,New,DE,2023-06-01"])
    append(data / "raw_orders.csv", ["1011,3,2023-07-05,completed,5.99", "1012,6,2023-07-10,completed,5.99"])
    append(data / "raw_order_items.csv", ["11,1011,104,1,99.99", "12,1012,101,1,29.99"])
    text = (
        (data / "raw_customers.csv")
        .read_text()
        .replace("2,jane.smith@email.com,Jane,Smith,UK", "2,jane.smith@email.com,Jane,Smith,FR")
    )
    (data / "raw_customers.csv").write_text(text)

    assert run(wh, data) == {"rows_inserted": 1, "rows_updated": 2, "rows_deleted": 0}
    assert_equals_full_rebuild(wh)
    after = updated_at(wh)
    assert {c for c in after if after[c] != before.get(c)} == {2, 3, 6}
    assert wh.scalar(f"select frequency from {INCREMENTAL} where customer_id = 3") == 3
    assert run(wh, data) == {"unchanged": True}


def test_a_later_order_moves_the_analysis_date_and_every_recency(setup):
    wh, data = setup
    append(data / "raw_orders.csv", ["1011,5,2023-08-01,completed,5.99"])
    append(data / "raw_order_items.csv", ["11,1011,103,1,19.99"])
    assert run(wh, data) == {"rows_inserted": 0, "rows_updated": 5, "rows_deleted": 0}
    assert_equals_full_rebuild(wh)


def test_removed_customers_are_deleted_and_full_refresh_rebuilds(setup):
    wh, data = setup
    lines = (data / "raw_customers.csv").read_text().splitlines()
    (data / "raw_customers.csv").write_text("\n".join(line for line in lines if not line.startswith("5,")) + "\n")
    # Customer 5's order would now be an orphan: remove it too.
    for name, prefix in (("raw_orders.csv", "1009,"), ("raw_order_items.csv", "9,")):
        lines = (data / name).read_text().splitlines()
        (data / name).write_text("\n".join(line for line in lines if not line.startswith(prefix)) + "\n")
    assert run(wh, data)["rows_deleted"] == 1
    assert_equals_full_rebuild(wh)
    assert run(wh, data, full_refresh=True) == {}
    assert_equals_full_rebuild(wh)


def full_rebuild_check(result, asset: str) -> dg.AssetCheckEvaluation:
    return next(
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_key.to_user_string() == asset and e.check_name == "equals_full_rebuild"
    )


def test_equals_full_rebuild_compares_maintained_rows_and_passes_a_build_from_scratch_by_construction(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(DATA, data)
    wh = make_warehouse(tmp_path, ECOMMERCE_VERIFY_SLICES="1")  # compare whole tables
    keys = sorted(dg.AssetSelection.from_string("*int_customer_orders").resolve(wh.defs.resolve_asset_graph()))
    config = {"ops": {"warehouse": {"config": {"data_dir": str(data)}}}}
    first = full_rebuild_check(wh.run(selection=keys, run_config=config), "int_customer_orders")
    assert first.passed and "from scratch" in first.metadata["note"].value
    append(data / "raw_orders.csv", ["1011,3,2023-07-05,completed,5.99"])
    append(data / "raw_order_items.csv", ["11,1011,104,1,99.99"])
    maintained = full_rebuild_check(wh.run(selection=keys, run_config=config), "int_customer_orders")
    assert maintained.passed and "note" not in maintained.metadata  # compared with a rebuild
    # A published row altered by hand: the next maintained run's comparison catches it.
    with duckdb.connect(wh.settings.duckdb_path) as con:
        con.execute("update intermediate.int_customer_orders set order_total = order_total + 1 where order_id = 1001")
    append(data / "raw_orders.csv", ["1012,4,2023-07-06,completed,5.99"])
    append(data / "raw_order_items.csv", ["12,1012,104,1,99.99"])
    altered = full_rebuild_check(wh.run(selection=keys, run_config=config), "int_customer_orders")
    assert not altered.passed and "note" not in altered.metadata
