"""Raw loading: explicit types, CSV or Parquet, folders of files, and only reading what changed."""

import shutil
from pathlib import Path

import duckdb

from ecommerce_assets_tests.conftest import DATA, make_warehouse

MART = "select * exclude (updated_at) from marts.fct_customer_metrics order by customer_id"


def loads(result) -> dict:
    return {
        e.asset_key.to_user_string(): (
            e.materialization.metadata["load"].value,
            len(e.materialization.metadata["files_read"].value),
        )
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string().startswith("raw_")
    }


def with_data(wh, data_dir, **config):
    result = wh.run(run_config={"ops": {"warehouse": {"config": {"data_dir": str(data_dir), **config}}}})
    assert result.success
    return result


def test_raw_columns_have_explicit_types(built):
    wh, _ = built
    types = dict(
        wh.query("select column_name, data_type from information_schema.columns where table_name = 'raw_orders'")
    )
    assert types == {
        "order_id": "BIGINT",
        "customer_id": "BIGINT",
        "order_date": "DATE",
        "status": "VARCHAR",
        "shipping_cost": "DECIMAL(18,2)",
        "_loaded_at": "TIMESTAMP",
    }


def test_unchanged_files_are_not_read_again(warehouse):
    first = with_data(warehouse, DATA)
    assert set(loads(first).values()) == {("replaced", 1)}
    loaded_at = warehouse.scalar("select max(_loaded_at) from raw.raw_orders")
    second = with_data(warehouse, DATA)
    assert set(loads(second).values()) == {("unchanged", 0)}
    assert warehouse.scalar("select max(_loaded_at) from raw.raw_orders") == loaded_at
    assert set(loads(with_data(warehouse, DATA, full_refresh=True)).values()) == {("replaced", 1)}


def split_into_folder(csv: Path, parts: dict[str, list[int]]) -> None:
    """Replace a CSV by a folder of files holding the given data rows (0-based) each."""
    header, *rows = csv.read_text().splitlines()
    csv.unlink()
    folder = csv.with_suffix("")
    folder.mkdir(exist_ok=True)
    for name, indexes in parts.items():
        (folder / f"{name}.csv").write_text("\n".join([header, *(rows[i] for i in indexes)]) + "\n")


def test_a_folder_of_files_gets_only_its_new_files_appended(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(DATA, data)
    # Orders 1001-1006 and their lines arrive first, 1007-1010 and theirs in a second file.
    split_into_folder(data / "raw_orders.csv", {"part-1": list(range(6))})
    split_into_folder(data / "raw_order_items.csv", {"part-1": list(range(6))})
    wh = make_warehouse(tmp_path)
    first = loads(with_data(wh, data))
    assert (first["raw_orders"], first["raw_customers"]) == (("replaced", 1), ("replaced", 1))

    second_orders = (DATA / "raw_orders.csv").read_text().splitlines()
    second_items = (DATA / "raw_order_items.csv").read_text().splitlines()
    (data / "raw_orders" / "part-2.csv").write_text("\n".join([second_orders[0], *second_orders[7:]]) + "\n")
    (data / "raw_order_items" / "part-2.csv").write_text("\n".join([second_items[0], *second_items[7:]]) + "\n")
    second = loads(with_data(wh, data))
    assert (second["raw_orders"], second["raw_order_items"], second["raw_customers"]) == (
        ("appended", 1),
        ("appended", 1),
        ("unchanged", 0),
    )
    assert wh.scalar("select count(*) from raw.raw_orders") == 10

    fresh = make_warehouse(tmp_path / "fresh")
    with_data(fresh, DATA)
    assert wh.query(MART) == fresh.query(MART)

    # A file loaded before and changed since (the cancelled order 1005 removed): all is read again.
    part_1 = data / "raw_orders" / "part-1.csv"
    part_1.write_text(
        "\n".join(line for line in part_1.read_text().splitlines() if not line.startswith("1005,")) + "\n"
    )
    assert loads(with_data(wh, data))["raw_orders"] == ("replaced", 2)
    assert wh.scalar("select count(*) from raw.raw_orders") == 9


def test_parquet_exports_give_the_same_marts_as_csv(built, tmp_path):
    wh, _ = built
    parquet = tmp_path / "parquet"
    parquet.mkdir()
    with duckdb.connect() as con:
        for csv in DATA.glob("*.csv"):
            con.execute(
                f"copy (from read_csv('{csv}', all_varchar = true)) to '{parquet / csv.stem}.parquet' (format parquet)"
            )
    other = make_warehouse(tmp_path / "p")
    with_data(other, parquet)
    assert other.query(MART) == wh.query(MART)
