"""Bad raw input (README "Bad input"): every case either fails the load with a message naming the
file, the line and the column, or keeps the row out of the models and records it, with its reason,
in staging.stg_rejected_rows; dates from the future never move the analysis date."""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from ecommerce_assets import cli
from ecommerce_assets.ingest.files import extra_columns
from ecommerce_assets.project.sources import RAW_TABLES
from ecommerce_assets.run.duckdb.context import DEFAULT_ANALYSIS_DATE_SQL
from ecommerce_assets.run.options import RunOptions
from ecommerce_assets_tests.conftest import DATA, make_warehouse

RAW = [r.name for r in RAW_TABLES]
STAGING = ["stg_customers", "stg_orders", "stg_order_items", "stg_products", "stg_rejected_rows"]
RAW_AND_STAGING = [dg.AssetKey(n) for n in RAW + STAGING]
HEADERS = {name: (DATA / f"{name}.csv").read_text().splitlines()[0] for name in RAW}


def data_dir(tmp_path: Path, **files: str | bytes | None) -> Path:
    """The bundled data with some files replaced (text or bytes) or removed (None)."""
    directory = tmp_path / "data"
    shutil.copytree(DATA, directory)
    for name, content in files.items():
        path = directory / f"{name}.csv"
        if content is None:
            path.unlink()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return directory


def appended(name: str, *lines: str) -> str:
    return (DATA / f"{name}.csv").read_text() + "".join(f"{line}\n" for line in lines)


def run(wh, selection, directory: Path | None = None) -> dg.ExecuteInProcessResult:
    config = {"ops": {"warehouse": {"config": {"data_dir": str(directory)}}}} if directory else None
    return wh.run(selection=selection, run_config=config)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One warehouse for the cases that each read their own data_dir (loading definitions once)."""
    return make_warehouse(tmp_path_factory.mktemp("shared"))


def step_error(result) -> str:
    return next(e for e in result.all_events if e.is_step_failure).step_failure_data.error.message


def raw_rows(wh, name: str) -> list[tuple]:
    return wh.query(f"select * exclude (_loaded_at) from raw.{name} order by all")


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    """Raw and staging built on the bundled data (read-only for tests)."""
    wh = make_warehouse(tmp_path_factory.mktemp("bundled"))
    result = run(wh, RAW_AND_STAGING)
    assert result.success
    return wh, result


def test_the_bundled_data_rejects_nothing(bundled):
    wh, result = bundled
    assert wh.scalar("select count(*) from staging.stg_rejected_rows") == 0
    assert {e.check_name for e in result.get_asset_check_evaluations() if not e.passed} == set()


# (a) The load fails, naming the file, the line and the column (and the value): table, file
# content (None: no file), what the message must say.
ITEM = HEADERS["raw_order_items"]
ORDER = HEADERS["raw_orders"]
FAILS = {
    "missing file": ("raw_products", None, ["no raw_products.csv, raw_products.parquet or raw_products/"]),
    "0-byte file": ("raw_orders", b"", ["raw_orders.csv:1: the file is empty (0 bytes)", ORDER.replace(",", ", ")]),
    "blank lines only": ("raw_orders", "\n\n", ["raw_orders.csv:1: the file is empty (only blank lines)"]),
    "missing column": (
        "raw_order_items",
        "order_item_id,order_id,product_id,quantity\n1,1001,101,2\n",
        ["raw_order_items.csv:1: missing column unit_price"],
    ),
    "two missing columns": (
        "raw_products",
        "product_id,product_name,category\n101,Mouse,Electronics\n",
        ["raw_products.csv:1: missing columns cost_price, list_price"],
    ),
    "column twice": (
        "raw_orders",
        f"{ORDER},status\n1001,1,2023-02-01,completed,5.99,completed\n",
        ["raw_orders.csv:1: column 'status' appears twice in the header (columns 4 and 6)"],
    ),
    "non-numeric quantity": (
        "raw_order_items",
        f"{ITEM}\n1,1001,101,2,29.99\n2,1001,102,two,49.99\n",
        ["raw_order_items.csv", "Line: 3", 'column "quantity"', '"two"'],
    ),
    "non-numeric price": (
        "raw_order_items",
        f"{ITEM}\n1,1001,101,2,$29.99\n",
        ["raw_order_items.csv", "Line: 2", 'column "unit_price"', '"$29.99"'],
    ),
    "impossible date": (
        "raw_orders",
        f"{ORDER}\n1001,1,2023-02-01,completed,5.99\n1002,1,2023-02-30,completed,5.99\n",
        ["raw_orders.csv", "Line: 3", 'column "order_date"', '"2023-02-30"'],
    ),
    "date in another format": (
        "raw_orders",
        f"{ORDER}\n1001,1,01/02/2023,completed,5.99\n",
        ["raw_orders.csv", "Line: 2", 'column "order_date"', '"01/02/2023"'],
    ),
    "integer too large": (
        "raw_order_items",
        f"{ITEM}\n1,1001,101,3000000000,29.99\n",
        ["raw_order_items.csv", "Line: 2", 'column "quantity"', '"3000000000"'],
    ),
    "id too large": (
        "raw_order_items",
        f"{ITEM}\n99999999999999999999,1001,101,2,29.99\n",
        ["raw_order_items.csv", "Line: 2", 'column "order_item_id"', '"99999999999999999999"'],
    ),
    "money too large": (
        "raw_order_items",
        f"{ITEM}\n1,1001,101,2,12345678901234567890.00\n",
        ["raw_order_items.csv", "Line: 2", 'column "unit_price"', '"12345678901234567890.00"'],
    ),
    "binary file": (
        "raw_customers",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        ["raw_customers.csv:3: not a text file (a NUL byte at offset 8)"],
    ),
    "parquet named .csv": ("raw_customers", b"PAR1\x15\x04", ["raw_customers.csv:1: this is a Parquet file"]),
    "semicolon-separated": (
        "raw_orders",
        ORDER.replace(",", ";") + "\n1001;1;2023-02-01;completed;5.99\n",
        ["raw_orders.csv:1: the header is separated by semicolons, not commas"],
    ),
    "tab-separated": (
        "raw_orders",
        ORDER.replace(",", "\t") + "\n1001\t1\t2023-02-01\tcompleted\t5.99\n",
        ["raw_orders.csv:1: the header is separated by tabs, not commas"],
    ),
    "a line with another delimiter": (
        "raw_orders",
        f"{ORDER}\n1001,1,2023-02-01,completed,5.99\n1002;1;2023-03-15;completed;5.99\n",
        ["raw_orders.csv", "Line: 3", 'column "order_id"', '"1002;1;2023-03-15;completed;5.99"'],
    ),
    "a line with an extra field": (
        "raw_orders",
        f"{ORDER}\n1001,1,2023-02-01,completed,5.99,x\n",
        ["raw_orders.csv", "Line: 2", "Expected Number of Columns: 5 Found: 6"],
    ),
    "unterminated quote": (
        "raw_customers",
        HEADERS["raw_customers"] + '\n1,a@x.com,"Ann,Lee,US,2023-01-15\n2,b@x.com,Bo,Kim,US,2023-01-16\n',
        ["raw_customers.csv", "Line: 2"],
    ),
    "not UTF-8": (
        "raw_customers",
        HEADERS["raw_customers"].encode() + b"\n1,a@x.com,Zo\xeb,Lee,US,2023-01-15\n",
        ["raw_customers.csv", "Line: 2"],
    ),
}


@pytest.mark.parametrize(("table", "content", "expected"), FAILS.values(), ids=FAILS.keys())
def test_an_unreadable_file_fails_the_load_naming_file_line_and_column(shared, tmp_path, table, content, expected):
    wh = shared
    result = run(wh, [dg.AssetKey(table)], data_dir(tmp_path, **{table: content}))
    assert not result.success
    message = step_error(result)
    for part in expected:
        assert part in message, message
    assert not result.get_asset_materialization_events()
    with duckdb.connect(wh.settings.duckdb_path, read_only=True) as con:
        tables = {t for (t,) in con.execute("select table_name from information_schema.tables").fetchall()}
    assert table not in tables


# Files that load exactly like the bundled ones although they are written differently.
def _reordered(name: str) -> str:
    lines = [line.split(",") for line in (DATA / f"{name}.csv").read_text().splitlines()]
    return "".join(",".join(reversed(fields)) + "\n" for fields in lines)


def _with_extra_column(name: str) -> str:
    header, *rows = (DATA / f"{name}.csv").read_text().splitlines()
    return "".join([f"{header},Notes\n", *(f'{row},"some, note"\n' for row in rows)])


SAME = {
    "UTF-8 BOM and CRLF": {n: b"\xef\xbb\xbf" + (DATA / f"{n}.csv").read_bytes().replace(b"\n", b"\r\n") for n in RAW},
    "columns in another order": {n: _reordered(n) for n in RAW},
    "header names in another case, padded": {
        "raw_orders": (DATA / "raw_orders.csv")
        .read_text()
        .replace(ORDER, " Order_ID , Customer_ID,ORDER_DATE,status,shipping_cost")
    },
    "an extra column": {"raw_customers": _with_extra_column("raw_customers")},
    "quoted fields": {
        "raw_products": (DATA / "raw_products.csv").read_text().replace("Wireless Mouse", '"Wireless Mouse"')
    },
    "trailing blank lines": {"raw_orders": (DATA / "raw_orders.csv").read_text() + "\n\n"},
}


@pytest.mark.parametrize("files", SAME.values(), ids=SAME.keys())
def test_a_differently_written_file_loads_exactly_like_the_bundled_one(bundled, shared, tmp_path, files):
    # Equal raw tables give equal models: everything downstream reads only them.
    reference, _ = bundled
    result = run(shared, [dg.AssetKey(n) for n in files], data_dir(tmp_path, **files))
    assert result.success
    for name in files:
        assert raw_rows(shared, name) == raw_rows(reference, name), name


def test_extra_columns_are_ignored_and_reported(tmp_path):
    directory = data_dir(tmp_path, raw_customers=_with_extra_column("raw_customers"))
    raw = next(r for r in RAW_TABLES if r.name == "raw_customers")
    assert extra_columns(raw, [directory / "raw_customers.csv"]) == {directory / "raw_customers.csv": ["Notes"]}
    assert extra_columns(raw, [DATA / "raw_customers.csv"]) == {}
    wh = make_warehouse(tmp_path, data_dir=directory)
    assert run(wh, [dg.AssetKey("raw_customers")]).success
    assert "_extra_7" not in {c for (c,) in wh.query("select column_name from information_schema.columns")}


def test_extra_columns_of_a_parquet_file_are_ignored_and_reported(shared, tmp_path):
    directory = data_dir(tmp_path, raw_products=None)
    path = directory / "raw_products.parquet"
    with duckdb.connect() as con:
        con.execute(
            f"copy (select list_price, 'x' as Supplier, * exclude (list_price) from read_csv('{DATA / 'raw_products.csv'}'))"
            f" to '{path}' (format parquet)"
        )
    raw = next(r for r in RAW_TABLES if r.name == "raw_products")
    assert extra_columns(raw, [path]) == {path: ["Supplier"]}
    wh = shared
    assert run(wh, [dg.AssetKey("raw_products")], directory).success
    assert wh.query("select product_id, list_price from raw.raw_products order by 1")[0] == (101, Decimal("29.99"))


def test_a_header_only_file_loads_no_rows_and_rejects_nothing(shared, tmp_path):
    wh = shared
    assert run(wh, RAW_AND_STAGING, data_dir(tmp_path, raw_order_items=ITEM + "\n")).success
    assert wh.scalar("select count(*) from staging.stg_order_items") == 0
    assert wh.scalar("select count(*) from staging.stg_rejected_rows") == 0
    assert wh.scalar("select count(*) from staging.stg_orders") == 10


# (b) Rows that load but break a rule: appended to the bundled data, each rejected with its reason.
REJECTS_DATA = {
    "raw_customers": appended(
        "raw_customers",
        ",nokey@x.com,No,Key,US,2023-01-01",
        "7,twin.a@x.com,Twin,A,US,2023-01-01",
        "7,twin.b@x.com,Twin,B,US,2023-01-02",
        "8,future@x.com,Fu,Ture,US,2099-01-01",
        "9, Padded@X.COM ,zoë,ñúñez-garcía,es,2023-01-03",
        "10,no-at-sign,In,Valid,US,2023-01-04",
        '11,kim@x.com,"lee, kim","van\ndyke",US,2023-01-05',
    ),
    "raw_orders": appended(
        "raw_orders",
        ",1,2023-06-01,completed,1.00",
        "2001,1,2023-06-02,completed,1.00",
        "2001,1,2023-06-02,completed,1.00",
        "2002,,2023-06-03,completed,1.00",
        "2003,99,2023-06-04,completed,1.00",
        "2004,7,2023-06-05,completed,1.00",
        "2005,2,,completed,1.00",
        "2006,2,2099-01-01,completed,1.00",
        "2007,2,2023-06-06,shipped,1.00",
        "2008,2,2023-06-07,,1.00",
        "2009,2,2023-06-08,completed,-2.00",
        "2010,9,2023-06-09, Returned ,0.00",
    ),
    "raw_order_items": appended(
        "raw_order_items",
        ",1001,101,1,1.00",
        "20,1001,101,1,1.00",
        "20,1001,102,1,1.00",
        "21,,101,1,1.00",
        "22,9999,101,1,1.00",
        "23,2006,101,1,1.00",
        "24,1001,,1,1.00",
        "25,1001,999,1,1.00",
        "26,1001,106,1,1.00",
        "27,1001,101,0,1.00",
        "28,1001,101,-2,1.00",
        "29,1001,101,1,",
        "30,1001,101,1,-5.00",
        "31,2010,109,1,0.00",
    ),
    "raw_products": appended(
        "raw_products",
        ",Ghost,Accessories,1.00,2.00",
        "107,Twin A,Accessories,1.00,2.00",
        "107,Twin B,Accessories,1.00,2.00",
        "106,Broken,Accessories,-1.00,2.00",
        "108,Negative,Accessories,1.00,-2.00",
        "109,Free gift,Accessories,0.00,0.00",
    ),
}
# (source, key, reason) for every rejected row.
REJECTED = [
    ("raw_customers", None, "null_key"),
    ("raw_customers", 7, "duplicate_key"),
    ("raw_customers", 7, "duplicate_key"),
    ("raw_customers", 8, "created_at_in_future"),
    ("raw_orders", None, "null_key"),
    ("raw_orders", 2001, "duplicate_key"),
    ("raw_orders", 2001, "duplicate_key"),
    ("raw_orders", 2002, "null_customer_id"),
    ("raw_orders", 2003, "unknown_customer_id"),
    ("raw_orders", 2004, "rejected_customer_id"),
    ("raw_orders", 2005, "null_order_date"),
    ("raw_orders", 2006, "order_date_in_future"),
    ("raw_orders", 2007, "unknown_status"),
    ("raw_orders", 2008, "unknown_status"),
    ("raw_orders", 2009, "negative_shipping_cost"),
    ("raw_order_items", None, "null_key"),
    ("raw_order_items", 20, "duplicate_key"),
    ("raw_order_items", 20, "duplicate_key"),
    ("raw_order_items", 21, "null_order_id"),
    ("raw_order_items", 22, "unknown_order_id"),
    ("raw_order_items", 23, "rejected_order_id"),
    ("raw_order_items", 24, "null_product_id"),
    ("raw_order_items", 25, "unknown_product_id"),
    ("raw_order_items", 26, "rejected_product_id"),
    ("raw_order_items", 27, "quantity_not_positive"),
    ("raw_order_items", 28, "quantity_not_positive"),
    ("raw_order_items", 29, "null_unit_price"),
    ("raw_order_items", 30, "negative_unit_price"),
    ("raw_products", None, "null_key"),
    ("raw_products", 107, "duplicate_key"),
    ("raw_products", 107, "duplicate_key"),
    ("raw_products", 106, "negative_cost_price"),
    ("raw_products", 108, "negative_list_price"),
]
ANALYSIS = [dg.AssetKey(n) for n in ("int_customer_orders", "int_customer_order_stats", "int_customer_rfm")]


@pytest.fixture(scope="module")
def rejecting(tmp_path_factory):
    """Raw, staging and the RFM table built on the bundled data plus one bad row per rule."""
    tmp_path = tmp_path_factory.mktemp("rejecting")
    wh = make_warehouse(tmp_path, data_dir=data_dir(tmp_path, **REJECTS_DATA))
    return wh, run(wh, RAW_AND_STAGING + ANALYSIS)


def test_rejected_rows_are_exactly_the_rows_that_break_a_rule(rejecting):
    wh, result = rejecting
    assert result.success
    got = wh.query("select source, key, reason from staging.stg_rejected_rows")
    assert sorted(got, key=repr) == sorted(REJECTED, key=repr)


@pytest.mark.parametrize(("source", "key", "reason"), sorted(set(REJECTED), key=repr), ids=lambda v: str(v))
def test_a_row_that_breaks_a_rule_is_kept_out_of_staging_and_recorded(rejecting, source, key, reason):
    wh, _ = rejecting
    rows = wh.query(
        "select raw_values, loaded_at, run_started_at from staging.stg_rejected_rows"
        " where source = ? and key is not distinct from ? and reason = ?",
        [source, key, reason],
    )
    assert rows
    raw_values, loaded_at, run_started_at = rows[0]
    raw = next(r for r in RAW_TABLES if r.name == source)
    key_column = next(iter(raw.columns))
    assert list(json.loads(raw_values)) == list(raw.columns) and json.loads(raw_values)[key_column] == key
    assert loaded_at == run_started_at == wh.scalar(f"select max(_loaded_at) from raw.{source}")
    staging = f"staging.stg_{source.removeprefix('raw_')}"
    assert wh.scalar(f"select count(*) from {staging} where {key_column} is not distinct from ?", [key]) == 0


def test_the_warn_check_counts_rejected_rows_per_source_and_reason(rejecting):
    _, result = rejecting
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    check = evaluations["rows_rejected"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    per_reason = {(s, r) for s, _, r in REJECTED}
    assert check.metadata["failing_rows"].value == len(per_reason) == 27
    assert "rejected_rows" in check.metadata["failing_sample"].value
    assert evaluations["every_raw_row_accounted_for"].passed
    # Nothing that reaches staging breaks a key: the blocking checks pass on this data.
    blocking = [e for e in result.get_asset_check_evaluations() if e.severity == dg.AssetCheckSeverity.ERROR]
    assert blocking and all(e.passed for e in blocking)


def test_rows_that_break_no_rule_are_kept_cleaned(rejecting):
    wh, result = rejecting
    customers = wh.query(
        "select customer_id, email, first_name, last_name, country, is_valid_email from staging.stg_customers"
        " where customer_id >= 9 order by 1"
    )
    assert customers == [
        (9, "padded@x.com", "Zoë", "Ñúñez-García", "ES", True),  # padded email, non-ASCII names
        (10, None, "In", "Valid", "US", False),  # invalid email: kept, email NULL, the WARN check counts it
        (11, "kim@x.com", "Lee, Kim", "Van\nDyke", "US", True),  # a quoted comma and newline
    ]
    assert wh.query("select order_status, is_completed from staging.stg_orders where order_id = 2010") == [
        ("returned", False)
    ]
    # A line at price 0 and a product at price 0 are kept; their WARN checks report them.
    assert wh.scalar("select count(*) from staging.stg_order_items where order_item_id = 31") == 1
    failed = {
        e.check_name: e.metadata["failing_rows"].value for e in result.get_asset_check_evaluations() if not e.passed
    }
    assert failed == {"rows_rejected": 27, "not_null_email": 1, "unit_price_positive": 1, "prices_positive": 1}


def test_an_order_from_the_future_does_not_move_the_analysis_date(rejecting):
    wh, _ = rejecting
    # 2099-01-01 is rejected; the latest completed order of the bundled data stays the reference.
    assert wh.query("select distinct analysis_date from intermediate.int_customer_rfm") == [(dt.date(2023, 7, 20),)]


def test_the_default_analysis_date_is_never_after_the_day_the_run_started():
    with duckdb.connect() as con:
        con.execute("set variable run_started_at = timestamp '2024-03-01 23:59:00'")
        con.execute("create schema staging")
        con.execute("create table staging.stg_orders (order_date date, is_completed boolean)")
        assert con.execute(DEFAULT_ANALYSIS_DATE_SQL).fetchone()[0] == dt.date(2024, 3, 1)  # no orders at all
        con.execute("insert into staging.stg_orders values ('2024-02-01', true), ('2099-01-01', true)")
        assert con.execute(DEFAULT_ANALYSIS_DATE_SQL).fetchone()[0] == dt.date(2024, 3, 1)


FUTURE = (dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=2)).isoformat()


def test_a_future_analysis_date_in_the_run_config_fails_naming_the_setting(warehouse):
    result = warehouse.run(run_config={"ops": {"warehouse": {"config": {"analysis_date": FUTURE}}}})
    assert not result.success
    assert f"analysis_date='{FUTURE}' is in the future" in step_error(result)
    assert not result.get_asset_materialization_events()


def test_a_future_analysis_date_on_the_command_line_is_a_usage_error(capsys):
    assert cli.main(["build", "--analysis-date", FUTURE]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--analysis-date='{FUTURE}' is in the future" in err and "\n" not in err
    today = dt.datetime.now(dt.timezone.utc).date()
    assert RunOptions.parse_date(today.isoformat()) == today


MAX_MONEY = "9999999999999999.99"  # the largest decimal(18, 2)
MAX_QUANTITY = 2147483647  # the largest integer


def test_the_largest_values_the_raw_types_accept_overflow_nothing(tmp_path):
    """Money at the top of decimal(18, 2) and quantities at the top of integer, in every table:
    every model and check runs, and the totals are exact."""
    directory = data_dir(
        tmp_path,
        raw_customers=appended("raw_customers", "9001,max@email.com,Max,Value,US,2023-01-01"),
        raw_products=appended("raw_products", f"9101,Costly,Electronics,{MAX_MONEY},0.01"),
        raw_orders=appended(
            "raw_orders",
            f"90001,9001,2023-03-01,completed,{MAX_MONEY}",
            f"90002,9001,2023-04-01,completed,{MAX_MONEY}",
        ),
        raw_order_items=appended(
            "raw_order_items",
            f"900001,90001,9101,{MAX_QUANTITY},{MAX_MONEY}",
            f"900002,90001,9101,{MAX_QUANTITY},{MAX_MONEY}",
            f"900003,90002,9101,1,{MAX_MONEY}",
        ),
    )
    wh = make_warehouse(tmp_path, directory)
    result = wh.run()
    assert result.success, step_error(result)
    failed = [
        e.check_name for e in result.get_asset_check_evaluations() if not e.passed and e.severity.value == "ERROR"
    ]
    assert failed == []
    assert wh.scalar("select count(*) from staging.stg_rejected_rows") == 0
    line, shipping = Decimal(MAX_QUANTITY) * Decimal(MAX_MONEY), Decimal(MAX_MONEY)
    totals = [2 * line + shipping, Decimal(MAX_MONEY) + shipping]
    assert wh.query("select order_total from intermediate.int_customer_orders where customer_id = 9001 order by 1") == [
        (min(totals),),
        (max(totals),),
    ]
    assert wh.scalar("select monetary_value from marts.fct_customer_metrics where customer_id = 9001") == sum(totals)
    volatility = wh.scalar("select order_value_volatility from ml.ml_customer_features where customer_id = 9001")
    assert math.isclose(volatility, float(abs(totals[0] - totals[1])) / math.sqrt(2), rel_tol=1e-9)
    assert wh.scalar("select revenue from intermediate.int_product_metrics where product_id = 9101") == (
        2 * line + Decimal(MAX_MONEY)
    )
