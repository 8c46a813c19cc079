from datetime import date, timedelta

import duckdb
import pytest

from ecommerce_assets.generate import FILES, generate, main

N = 2000
HEADERS = {
    "raw_customers": "customer_id,email,first_name,last_name,country,created_at",
    "raw_orders": "order_id,customer_id,order_date,status,shipping_cost",
    "raw_order_items": "order_item_id,order_id,product_id,quantity,unit_price",
    "raw_products": "product_id,product_name,category,cost_price,list_price",
}


def _connect(out_dir, fmt="csv"):
    """Load the generated files once; typed views customers/orders/items/products on top."""
    con = duckdb.connect()
    views = {
        "customers": "raw_customers",
        "orders": "raw_orders",
        "items": "raw_order_items",
        "products": "raw_products",
    }
    for view, stem in views.items():
        path = out_dir / f"{stem}.{fmt}"
        # all_varchar keeps dirty values (padding, case) exactly as written
        reader = f"read_csv('{path}', all_varchar = true)" if fmt == "csv" else f"'{path}'"
        con.execute(f"CREATE TABLE {view}_raw AS SELECT * FROM {reader}")
    con.execute("""
        CREATE VIEW customers AS SELECT customer_id::BIGINT AS customer_id, email, first_name,
            last_name, country, created_at::DATE AS created_at FROM customers_raw;
        CREATE VIEW orders AS SELECT order_id::BIGINT AS order_id, customer_id::BIGINT AS customer_id,
            order_date::DATE AS order_date, status, shipping_cost::DECIMAL(10, 2) AS shipping_cost FROM orders_raw;
        CREATE VIEW items AS SELECT order_item_id::BIGINT AS order_item_id, order_id::BIGINT AS order_id,
            product_id::BIGINT AS product_id, quantity::INT AS quantity,
            unit_price::DECIMAL(10, 2) AS unit_price FROM items_raw;
        CREATE VIEW products AS SELECT product_id::BIGINT AS product_id, product_name, category,
            cost_price::DECIMAL(10, 2) AS cost_price, list_price::DECIMAL(10, 2) AS list_price FROM products_raw;
    """)
    return con


def _one(con, sql):
    return con.execute(sql).fetchone()[0]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    return out, generate(out, N)


@pytest.fixture(scope="module")
def dirty(tmp_path_factory):
    out = tmp_path_factory.mktemp("dirty")
    return out, generate(out, N, dirty=0.1)


def test_files_have_exact_headers_and_counts(clean):
    out, counts = clean
    assert list(counts) == list(FILES)
    for stem, header in HEADERS.items():
        lines = (out / f"{stem}.csv").read_text().splitlines()
        assert lines[0] == header
        assert len(lines) - 1 == counts[stem]
    assert counts["raw_customers"] == N
    assert counts["raw_products"] == 50  # default catalogue floor for small N


def test_values_are_formatted_like_bundled_data(clean):
    out, _ = clean
    order = (out / "raw_orders.csv").read_text().splitlines()[1].split(",")
    assert len(order[2]) == 10 and order[2][4] == "-" and order[2][7] == "-"  # YYYY-MM-DD
    assert len(order[4].split(".")[1]) == 2
    product = (out / "raw_products.csv").read_text().splitlines()[1].split(",")
    assert all(len(price.split(".")[1]) == 2 for price in product[-2:])


def test_same_seed_gives_identical_bytes_and_other_seed_differs(clean, tmp_path):
    out, _ = clean
    generate(tmp_path / "again", N)
    generate(tmp_path / "other", N, seed=7)
    for stem in FILES:
        original = (out / f"{stem}.csv").read_bytes()
        assert (tmp_path / "again" / f"{stem}.csv").read_bytes() == original
        assert (tmp_path / "other" / f"{stem}.csv").read_bytes() != original


@pytest.mark.parametrize("fixture", ["clean", "dirty"])
def test_referential_integrity_keys_and_dates(fixture, request):
    out, _ = request.getfixturevalue(fixture)
    con = _connect(out)
    assert _one(con, "SELECT count(*) FROM orders ANTI JOIN customers USING (customer_id)") == 0
    assert _one(con, "SELECT count(*) FROM items ANTI JOIN orders USING (order_id)") == 0
    assert _one(con, "SELECT count(*) FROM items ANTI JOIN products USING (product_id)") == 0
    assert _one(con, "SELECT count(*) FROM orders ANTI JOIN items USING (order_id)") == 0
    # primary keys unique and the files sorted by them
    for view, key in [
        ("customers", "customer_id"),
        ("orders", "order_id"),
        ("items", "order_item_id"),
        ("products", "product_id"),
    ]:
        keys = [r[0] for r in con.execute(f"SELECT {key} FROM {view}").fetchall()]
        assert keys == sorted(set(keys))
    assert (
        _one(
            con,
            """SELECT count(*) FROM orders JOIN customers USING (customer_id)
                        WHERE order_date < created_at OR order_date > DATE '2024-12-31'""",
        )
        == 0
    )
    lo, hi = con.execute("SELECT min(created_at)::VARCHAR, max(created_at)::VARCHAR FROM customers").fetchone()
    assert lo >= "2021-01-01" and hi <= "2024-12-31"
    assert _one(con, "SELECT count(*) FROM orders WHERE shipping_cost NOT BETWEEN 0 AND 15") == 0
    assert _one(con, "SELECT count(*) FROM orders WHERE lower(trim(status)) = 'cancelled' AND shipping_cost <> 0") == 0
    assert _one(con, "SELECT count(*) FROM products WHERE NOT (0 < cost_price AND cost_price < list_price)") == 0
    assert (
        _one(
            con,
            """SELECT count(*) FROM items JOIN products USING (product_id)
                        WHERE unit_price > list_price OR unit_price <= 0""",
        )
        == 0
    )
    assert con.execute(
        """SELECT min(n), max(n) FROM (SELECT count(*) AS n FROM items GROUP BY order_id)"""
    ).fetchone() == (1, 5)
    assert _one(con, "SELECT count(*) FROM items WHERE quantity NOT BETWEEN 0 AND 4") == 0


def test_distributions_look_like_a_shop(clean):
    out, counts = clean
    con = _connect(out)
    con.execute("""CREATE TABLE per_customer AS SELECT c.customer_id, count(o.order_id) AS n
                   FROM customers c LEFT JOIN orders o USING (customer_id) GROUP BY ALL""")
    assert 2.5 < counts["raw_orders"] / N < 3.5
    assert 2.0 < counts["raw_order_items"] / counts["raw_orders"] < 2.7
    assert _one(con, "SELECT count(*) FROM per_customer WHERE n = 0") > 0.05 * N
    assert _one(con, "SELECT count(*) FROM per_customer WHERE n = 1") > 0.25 * N
    assert _one(con, "SELECT count(*) FROM per_customer WHERE n >= 9") > 0.01 * N

    statuses = dict(con.execute("SELECT status, count(*) FROM orders GROUP BY ALL").fetchall())
    assert set(statuses) == {"completed", "cancelled", "returned", "pending"}
    assert statuses["completed"] > 0.7 * counts["raw_orders"]

    assert _one(con, "SELECT count(DISTINCT country) FROM customers") >= 6
    assert _one(con, "SELECT count(DISTINCT category) FROM products") >= 5
    assert _one(con, "SELECT count(*) FROM (SELECT order_id FROM items GROUP BY 1 HAVING count(*) > 1)") > 0
    assert _one(con, "SELECT count(*) FROM items WHERE quantity > 1") > 0
    assert (
        _one(
            con,
            """SELECT count(*) FROM items JOIN products USING (product_id)
                        WHERE unit_price < list_price""",
        )
        > 0
    )  # some discounts
    assert _one(con, "SELECT count(DISTINCT product_name) FROM products") == counts["raw_products"]


def test_dirty_zero_is_clean(clean):
    con = _connect(clean[0])
    assert (
        _one(
            con,
            """SELECT count(*) FROM customers WHERE email IS NULL OR email NOT LIKE '%_@_%'
                        OR email <> lower(trim(email))""",
        )
        == 0
    )
    assert (
        _one(
            con,
            """SELECT count(*) FROM customers WHERE first_name <> trim(first_name)
                        OR last_name <> trim(last_name) OR first_name[1] <> upper(first_name[1])
                        OR country <> upper(country)""",
        )
        == 0
    )
    assert (
        _one(con, "SELECT count(*) FROM orders WHERE status NOT IN ('completed', 'cancelled', 'returned', 'pending')")
        == 0
    )
    assert _one(con, "SELECT min(quantity) FROM items") >= 1


def test_dirty_plants_every_kind(dirty, clean):
    out, counts = dirty
    con = _connect(out)
    kinds = {
        "padded mixed-case email": "SELECT count(*) FROM customers WHERE email <> trim(email) AND email <> lower(email)",
        "email without @": "SELECT count(*) FROM customers WHERE email NOT LIKE '%@%'",
        "empty email": "SELECT count(*) FROM customers WHERE coalesce(trim(email), '') = ''",
        "lower-case first name": "SELECT count(*) FROM customers WHERE first_name = lower(first_name)",
        "padded first name": "SELECT count(*) FROM customers WHERE first_name <> trim(first_name)",
        "lower-case last name": "SELECT count(*) FROM customers WHERE last_name = lower(last_name)",
        "padded last name": "SELECT count(*) FROM customers WHERE last_name <> trim(last_name)",
        "lower-case country": "SELECT count(*) FROM customers WHERE country = lower(country)",
        "upper-case status": "SELECT count(*) FROM orders WHERE status = upper(status)",
        "padded capitalised status": "SELECT count(*) FROM orders WHERE status LIKE ' %' AND status[2] = upper(status[2])",
        "zero quantity": "SELECT count(*) FROM items WHERE quantity = 0",
    }
    for kind, sql in kinds.items():
        assert _one(con, sql) > 0, kind
    # roughly the requested fraction, not everything
    bad_status = _one(
        con, "SELECT count(*) FROM orders WHERE status NOT IN ('completed', 'cancelled', 'returned', 'pending')"
    )
    assert 0.05 < bad_status / counts["raw_orders"] < 0.15
    zero_qty = _one(con, "SELECT count(*) FROM items WHERE quantity = 0")
    assert 0.05 < zero_qty / counts["raw_order_items"] < 0.15
    # dirt never changes keys or row counts
    assert counts == clean[1]


def test_parquet_reads_back_with_same_counts(clean, tmp_path):
    out, counts = clean
    assert generate(tmp_path, N, fmt="parquet") == counts
    con = _connect(tmp_path, fmt="parquet")
    for view, stem in [
        ("customers", "raw_customers"),
        ("orders", "raw_orders"),
        ("items", "raw_order_items"),
        ("products", "raw_products"),
    ]:
        assert _one(con, f"SELECT count(*) FROM {view}") == counts[stem]
        columns = [r[0] for r in con.execute(f"DESCRIBE {view}_raw").fetchall()]
        assert ",".join(columns) == HEADERS[stem]


def test_cli_prints_one_summary_line(tmp_path, capsys):
    main(["--customers", "100", "--out", str(tmp_path), "--seed", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "raw_customers=100" in lines[0] and lines[0].endswith("s")
    assert all((tmp_path / f"{stem}.csv").exists() for stem in FILES)


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        generate(tmp_path, 10, fmt="json")
    with pytest.raises(ValueError):
        generate(tmp_path, 10, dirty=1.5)
    with pytest.raises(ValueError):
        generate(tmp_path, 10, days=-1)


def _rows(path):
    reader = f"read_csv('{path}', all_varchar = true)" if path.suffix == ".csv" else f"read_parquet('{path}')"
    return duckdb.sql(f"SELECT * FROM {reader}").fetchall()


@pytest.mark.parametrize(
    ("customers", "dirty", "fmt", "days"),
    [(N, 0.0, "csv", 3), (N, 0.1, "csv", 3), (N, 0.0, "parquet", 3), (150, 0.0, "csv", 4)],
    ids=["csv", "dirty", "parquet", "days-without-orders"],
)
def test_days_cuts_the_same_rows_into_daily_files(tmp_path, customers, dirty, fmt, days):
    whole = generate(tmp_path / "whole", customers, dirty=dirty, fmt=fmt)
    assert generate(tmp_path / "daily", customers, dirty=dirty, fmt=fmt, days=days) == whole
    orders = {int(r[0]): date.fromisoformat(str(r[2])) for r in _rows(tmp_path / "whole" / f"raw_orders.{fmt}")}
    cuts = sorted(set(orders.values()))[-days:]
    consecutive = cuts == [cuts[0] + timedelta(days=k) for k in range(days)]
    # 2,000 customers order every day; 150 leave days without orders, whose new customers go to the next file.
    assert consecutive == (customers == N)
    assert _rows(tmp_path / "daily" / f"raw_products.{fmt}") == _rows(tmp_path / "whole" / f"raw_products.{fmt}")
    for stem in FILES[:3]:
        files = sorted((tmp_path / "daily" / stem).iterdir())
        # The loader reads a folder in name order: the base first, then the days in date order.
        assert [p.name for p in files] == [f"{stem}_{s}.{fmt}" for s in ["0000_base", *map(str, cuts)]]
        parts = [_rows(p) for p in files]
        assert sorted(r for part in parts for r in part) == sorted(_rows(tmp_path / "whole" / f"{stem}.{fmt}"))
        for i, rows in enumerate(parts):
            if stem == "raw_customers":
                dated = [date.fromisoformat(str(r[5])) for r in rows]
                # With the first cut day on or after the sign-up; the last file takes any later ones too.
                lo = date.min if i == 0 else cuts[0] if i == 1 else cuts[i - 2] + timedelta(days=1)
                hi = cuts[0] - timedelta(days=1) if i == 0 else date.max if i == days else cuts[i - 1]
            else:
                assert rows  # every cut day has orders
                dated = [orders[int(r[0] if stem == "raw_orders" else r[1])] for r in rows]
                lo, hi = (date.min, cuts[0] - timedelta(days=1)) if i == 0 else (cuts[i - 1], cuts[i - 1])
            assert all(lo <= d <= hi for d in dated), (files[i].name, dated)


def test_regenerating_in_another_layout_or_format_replaces_the_earlier_files(tmp_path):
    generate(tmp_path, 100, days=2)
    generate(tmp_path, 100, fmt="parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{stem}.parquet" for stem in FILES)
    generate(tmp_path, 100, days=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*FILES[:3], "raw_products.csv"])
