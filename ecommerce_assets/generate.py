"""Generate synthetic raw e-commerce files shaped like the bundled data/ CSVs.

    python -m ecommerce_assets.generate --customers 1000000 --out /tmp/data [--days 7]

Rows are produced set-wise inside DuckDB (range() + unnest), never row by row
in Python. Randomness comes from hash(key, seed, salt) rather than random():
a hash of the row's own key gives the same value whatever thread computes it,
so a seed always yields byte-identical files.

IDs follow the bundled data: customers from 1, products from 101, orders
from 1001 (numbered in date order, like a real order sequence), items from 1.

With --days K the same rows are cut into daily exports, in the folder layout the
loader appends from (raw_files.source_files): raw_x/raw_x_0000_base.<fmt> holds
what came before the last K order dates, and each raw_x/raw_x_<YYYY-MM-DD>.<fmt>
that day's orders, their lines, and the customers created since the file before.
"""

import argparse
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb

FILES = ("raw_customers", "raw_orders", "raw_order_items", "raw_products")

# Nouns and price range (USD) per category; product names are
# "<brand> <adjective> <noun>", which gives 12 * 8 * 56 = 5376 distinct names.
CATEGORIES = """
    ('Electronics', ['Mouse', 'Keyboard', 'Headphones', 'Monitor', 'Webcam', 'Speaker', 'Power Bank'], 12, 450),
    ('Accessories', ['USB Cable', 'Laptop Stand', 'Phone Case', 'Backpack', 'Wallet', 'Sunglasses', 'Watch Strap'], 5, 150),
    ('Home & Kitchen', ['Coffee Maker', 'Blender', 'Knife Set', 'Cookware Set', 'Desk Lamp', 'Towel Set', 'Storage Box'], 10, 250),
    ('Clothing', ['T-Shirt', 'Hoodie', 'Jeans', 'Sneakers', 'Jacket', 'Dress', 'Socks'], 8, 180),
    ('Sports & Outdoors', ['Yoga Mat', 'Water Bottle', 'Dumbbell Set', 'Tent', 'Running Shorts', 'Bike Helmet', 'Hiking Boots'], 8, 350),
    ('Beauty', ['Face Cream', 'Shampoo', 'Perfume', 'Lipstick', 'Hair Dryer', 'Serum', 'Body Lotion'], 5, 120),
    ('Books', ['Cookbook', 'Novel', 'Travel Guide', 'Notebook', 'Planner', 'Art Book', 'Biography'], 5, 60),
    ('Toys & Games', ['Board Game', 'Puzzle', 'Building Set', 'Plush Toy', 'Card Game', 'RC Car', 'Doll House'], 8, 150)
"""
BRANDS = "['Northwind', 'Acme', 'Zenith', 'Lumen', 'Orbit', 'Everly', 'Kestrel', 'Novo', 'Atlas', 'Fable', 'Harbor', 'Pioneer']"
ADJECTIVES = "['Classic', 'Premium', 'Essential', 'Compact', 'Deluxe', 'Everyday', 'Pro', 'Eco']"

FIRST_NAMES = """['James', 'Mary', 'John', 'Patricia', 'Robert', 'Jennifer', 'Michael', 'Linda',
    'David', 'Elizabeth', 'William', 'Susan', 'Richard', 'Jessica', 'Thomas', 'Sarah', 'Daniel',
    'Karen', 'Oliver', 'Emma', 'Lucas', 'Sophie', 'Noah', 'Mia', 'Liam', 'Chloe', 'Lukas', 'Anna',
    'Jonas', 'Lea', 'Louis', 'Camille', 'Hugo', 'Manon', 'Budi', 'Siti', 'Agus', 'Dewi', 'Jack',
    'Charlotte', 'Ethan', 'Amelia', 'Ava', 'Leo', 'Grace', 'Max', 'Ella', 'Ben', 'Zoe', 'Sam']"""
LAST_NAMES = """['Smith', 'Johnson', 'Williams', 'Brown', 'Jones', 'Garcia', 'Miller', 'Davis',
    'Wilson', 'Taylor', 'Anderson', 'Thomas', 'Moore', 'Martin', 'Lee', 'Walker', 'Hall', 'Young',
    'King', 'Wright', 'Scott', 'Green', 'Baker', 'Adams', 'Nelson', 'Hill', 'Campbell', 'Evans',
    'Turner', 'Parker', 'Collins', 'Edwards', 'Stewart', 'Murphy', 'Cook', 'Mueller', 'Schmidt',
    'Schneider', 'Fischer', 'Weber', 'Dubois', 'Bernard', 'Moreau', 'Laurent', 'Santoso',
    'Wijaya', 'Saputra', 'Tan', 'Nguyen', 'Chen']"""
# Repeats act as weights: gmail and the US dominate, as in most shops.
DOMAINS = (
    "['gmail.com', 'gmail.com', 'gmail.com', 'yahoo.com', 'outlook.com', 'hotmail.com', 'icloud.com', 'email.com']"
)
COUNTRIES = """['US', 'US', 'US', 'US', 'US', 'US', 'US', 'UK', 'UK', 'UK', 'CA', 'CA', 'DE', 'DE',
    'FR', 'FR', 'AU', 'AU', 'ID', 'ID', 'NL', 'ES', 'IT', 'IN', 'BR', 'JP', 'SG', 'MX']"""

LAST_DAY = "DATE '2024-12-31'"

# Purchase behaviour (see _sql): share of sign-ups who never order; days between orders for the
# most and least engaged; how much longer each gap is than the one before, at most; mean lifetime
# in days after the first order for the least and most engaged; its factor after a cancelled or
# returned first order; and the share of each month's candidate orders that happen (Jan..Dec).
BROWSERS = 0.12
GAP_MIN, GAP_MAX = 15, 200
DECAY_MAX = 0.3
LIFE_MIN, LIFE_MAX = 60, 1100
BAD_FIRST_ORDER = 0.25
SEASON = "[0.55, 0.6, 0.8, 0.8, 0.8, 0.75, 0.7, 0.75, 0.85, 0.9, 1.0, 1.0]"


def _sql(seed: int, customers: int, products: int) -> str:
    """Tables holding the clean data; dirt is added only when writing."""
    return f"""
    -- u in [0, 1), keyed on (a, b) so every row/column draws independently.
    CREATE MACRO rnd(a, b, salt) AS (hash(a, b, {seed}, salt) % 1000000) / 1000000.0;
    CREATE MACRO pick(items, a, b, salt) AS items[1 + floor(rnd(a, b, salt) * len(items))::INT];

    CREATE TABLE products AS
    WITH categories(category, nouns, lo, hi) AS (VALUES {CATEGORIES}),
    names AS (
        SELECT brand || ' ' || adj || ' ' || noun AS product_name, category, lo, hi,
               -- seeded shuffle so the catalogue isn't alphabetical
               row_number() OVER (ORDER BY hash(brand, adj, noun, {seed}), brand, adj, noun) - 1 AS r
        FROM unnest({BRANDS}) b(brand), unnest({ADJECTIVES}) a(adj),
             (SELECT category, unnest(nouns) AS noun, lo, hi FROM categories)
    ),
    priced AS (
        SELECT i, product_name, category,
               -- log-uniform so cheap items outnumber expensive ones; .99 endings
               greatest(ceil(exp(ln(lo) + rnd(i, 0, 'price') * (ln(hi) - ln(lo)))) - 0.01, 0.99)
                   ::DECIMAL(10, 2) AS list_price
        FROM range({products}) t(i)
        JOIN names ON r = i % (SELECT count(*) FROM names)
    )
    SELECT 101 + i AS product_id, product_name, category,
           (list_price * (0.35 + 0.4 * rnd(i, 0, 'cost')))::DECIMAL(10, 2) AS cost_price,
           list_price
    FROM priced ORDER BY product_id;

    -- Purchase behaviour ("buy till you die"): after a first order soon after sign-up, a customer
    -- orders again after gaps that lengthen with every order (a decaying rate) until an unseen
    -- churn date; orders in the quiet months are thinned (seasonality); a first order that was
    -- cancelled or returned shortens the customer's life four-fold (first-order experience).
    -- Churn thus has causes a model can learn from the order history, beyond recency alone.
    CREATE TABLE customers AS
    SELECT *,
           -- at most this many candidate orders (~3x those expected before churn, for the tail)
           least(40, 2 + ceil(3 * least(life_days, {LAST_DAY} - created_at) / gap_days))::INT AS n_candidates
    FROM (
        SELECT i AS customer_id,
               pick({FIRST_NAMES}, i, 0, 'first') AS first_name,
               pick({LAST_NAMES}, i, 0, 'last') AS last_name,
               pick({DOMAINS}, i, 0, 'domain') AS domain,
               pick({COUNTRIES}, i, 0, 'country') AS country,
               DATE '2021-01-01' + floor(rnd(i, 0, 'created') * 1461)::INT AS created_at,
               rnd(i, 0, 'orders') < {BROWSERS} AS never_orders,
               -- engaged customers order often and stay long
               {GAP_MAX} - ({GAP_MAX} - {GAP_MIN}) * e AS gap_days,
               1 + {DECAY_MAX} * pow(rnd(i, 0, 'decay'), 2) AS decay,
               -- exponential lifetime after the first order; the first order's status is drawn
               -- with the same key as in `orders` (k = 0), so this is the status it will have
               -ln(1 - rnd(i, 0, 'life')) * ({LIFE_MIN} + ({LIFE_MAX} - {LIFE_MIN}) * e)
                   * CASE WHEN rnd(i, 0, 'status') < 0.10 THEN {BAD_FIRST_ORDER} ELSE 1 END AS life_days
        FROM (SELECT range AS i, pow(rnd(range, 0, 'engagement'), 1.5) AS e FROM range(1, {customers} + 1))
    )
    ORDER BY customer_id;

    CREATE TABLE orders AS
    WITH candidates AS (
        SELECT customer_id, created_at, life_days, k,
               least({LAST_DAY} - created_at, floor(rnd(customer_id, 0, 'date') * 30))::INT AS first_offset,
               -- whole days, so the running sum below is exact whatever the summation order
               CASE WHEN k = 0 THEN 0
                    ELSE round(-ln(1 - rnd(customer_id, k, 'date')) * gap_days * pow(decay, k - 1)) END::BIGINT AS gap
        FROM (SELECT customer_id, created_at, life_days, gap_days, decay, unnest(range(n_candidates)) AS k
              FROM customers WHERE NOT never_orders)
    ),
    timed AS (
        SELECT customer_id, k, life_days, created_at + first_offset AS first_date,
               created_at + (first_offset + sum(gap) OVER (PARTITION BY customer_id ORDER BY k))::INT AS order_date
        FROM candidates
    ),
    o AS (
        SELECT customer_id, k, order_date, rnd(customer_id, k, 'status') AS u
        FROM timed
        WHERE k = 0
           OR (order_date - first_date <= life_days
               AND order_date <= {LAST_DAY}
               AND rnd(customer_id, k, 'season') < {SEASON}[month(order_date)])
    ),
    s AS (
        SELECT customer_id, k, order_date,
               CASE WHEN u < 0.06 THEN 'cancelled'
                    WHEN u < 0.10 THEN 'returned'
                    -- the last week's orders mostly haven't shipped yet
                    WHEN u < 0.60 AND order_date > {LAST_DAY} - 7 THEN 'pending'
                    WHEN u < 0.12 THEN 'pending'
                    ELSE 'completed' END AS status,
               -- 1-5 items, mean ~2.33 (7 items per 3 orders)
               CASE WHEN w < 0.33 THEN 1 WHEN w < 0.63 THEN 2 WHEN w < 0.80 THEN 3
                    WHEN w < 0.91 THEN 4 ELSE 5 END AS n_items
        FROM (SELECT *, rnd(customer_id, k, 'items') AS w FROM o)
    )
    SELECT 1000 + row_number() OVER w AS order_id, customer_id, order_date, status,
           CASE WHEN status = 'cancelled' THEN 0
                WHEN rnd(customer_id, k, 'ship') < 0.25 THEN 0  -- free shipping
                ELSE pick([4.99, 5.99, 7.99, 9.99, 12.99, 14.99], customer_id, k, 'ship_fee')
           END::DECIMAL(10, 2) AS shipping_cost,
           n_items,
           -- running total gives each order a contiguous block of item ids
           sum(n_items) OVER w - n_items + 1 AS first_item_id
    FROM s
    WINDOW w AS (ORDER BY order_date, customer_id, k)
    ORDER BY order_id;
    """


def _span(column: str, after: date | None, upto: date | None) -> str:
    """`column` in (after, upto]; None leaves that end open."""
    bounds = [f"{column} > DATE '{after}'" if after else "", f"{column} <= DATE '{upto}'" if upto else ""]
    return " AND ".join(b for b in bounds if b) or "TRUE"


def _copy_sql(dirty: float, products: int, after: date | None = None, upto: date | None = None) -> dict[str, str]:
    """SELECTs for each file; a row gets a given kind of dirt when rnd(...) < dirty. Customers,
    orders and order lines are limited to the customers created and the orders placed in
    (after, upto]: a line goes with its order. Dirt is keyed on ids, so a row is the same
    whichever file it lands in."""
    d = dirty
    return {
        "raw_customers": f"""
            SELECT customer_id,
                   CASE WHEN rnd(customer_id, 0, 'dirty_email') >= {d}
                            THEN lower(first_name || '.' || last_name) || customer_id || '@' || domain
                        ELSE CASE floor(rnd(customer_id, 0, 'dirty_email_kind') * 4)
                                 WHEN 0 THEN NULL  -- missing
                                 WHEN 1 THEN lower(first_name || '.' || last_name) || customer_id || domain  -- no '@'
                                 ELSE ' ' || first_name || '.' || last_name || customer_id || '@' || upper(domain) || '  '
                             END
                   END AS email,
                   CASE WHEN rnd(customer_id, 0, 'dirty_first') >= {d} THEN first_name
                        WHEN rnd(customer_id, 0, 'dirty_first_kind') < 0.5 THEN lower(first_name)
                        ELSE '  ' || first_name || ' ' END AS first_name,
                   CASE WHEN rnd(customer_id, 0, 'dirty_last') >= {d} THEN last_name
                        WHEN rnd(customer_id, 0, 'dirty_last_kind') < 0.5 THEN lower(last_name)
                        ELSE last_name || '  ' END AS last_name,
                   CASE WHEN rnd(customer_id, 0, 'dirty_country') < {d} THEN lower(country)
                        ELSE country END AS country,
                   created_at
            FROM customers WHERE {_span("created_at", after, upto)} ORDER BY customer_id""",
        "raw_orders": f"""
            SELECT order_id, customer_id, order_date,
                   CASE WHEN rnd(order_id, 0, 'dirty_status') >= {d} THEN status
                        ELSE CASE floor(rnd(order_id, 0, 'dirty_status_kind') * 3)
                                 WHEN 0 THEN upper(status)
                                 WHEN 1 THEN ' ' || upper(status[1]) || status[2:] || ' '
                                 ELSE status || '  '
                             END
                   END AS status,
                   shipping_cost
            FROM orders WHERE {_span("order_date", after, upto)} ORDER BY order_id""",
        "raw_order_items": f"""
            SELECT first_item_id + line AS order_item_id, order_id, i.product_id,
                   CASE WHEN rnd(order_id, line, 'dirty_qty') < {d} THEN 0
                        WHEN q < 0.70 THEN 1 WHEN q < 0.90 THEN 2 WHEN q < 0.97 THEN 3 ELSE 4
                   END AS quantity,
                   CASE WHEN rnd(order_id, line, 'discount') < 0.15
                            THEN list_price * (1 - pick([0.10, 0.15, 0.20, 0.25, 0.30], order_id, line, 'pct'))
                        ELSE list_price END::DECIMAL(10, 2) AS unit_price
            FROM (SELECT order_id, first_item_id, line,
                         -- squared uniform: a few best-sellers, a long tail
                         101 + floor({products} * pow(rnd(order_id, line, 'product'), 2))::INT AS product_id,
                         rnd(order_id, line, 'qty') AS q
                  FROM (SELECT order_id, first_item_id, unnest(range(n_items)) AS line FROM orders
                        WHERE {_span("order_date", after, upto)})) i
            JOIN products p ON p.product_id = i.product_id
            ORDER BY order_item_id""",
        "raw_products": "SELECT product_id, product_name, category, cost_price, list_price FROM products ORDER BY product_id",
    }


def _batches(con: duckdb.DuckDBPyConnection, days: int) -> list[tuple[str, date | None, date | None]]:
    """(file name suffix, after, upto) of the base file and of each of the last `days` order dates.

    A day's file takes what happened after the previous file's day, up to its own: the orders of
    that day exactly (there are none in between), and any customer created on a day without orders
    as well, so a customer is never loaded after their orders. The last file also takes customers
    created after the last order, who would otherwise be in no file."""
    last = [
        d for (d,) in con.execute(f"SELECT DISTINCT order_date FROM orders ORDER BY 1 DESC LIMIT {days}").fetchall()
    ]
    cuts = sorted(last)
    if not cuts:
        return [("0000_base", None, None)]
    bounds = [cuts[0] - timedelta(days=1), *cuts]
    return [("0000_base", None, bounds[0])] + [
        (day.isoformat(), bounds[i], bounds[i + 1] if i + 1 < len(cuts) else None) for i, day in enumerate(cuts)
    ]


def _clear_earlier_output(out: Path) -> None:
    """Remove what an earlier run wrote here in another layout or format: the loader refuses a
    raw_x.csv next to a raw_x/ folder or a raw_x.parquet, and would load stale day files."""
    for stem in FILES:
        for fmt in ("csv", "parquet"):
            (out / f"{stem}.{fmt}").unlink(missing_ok=True)
            for path in (out / stem).glob(f"{stem}_*.{fmt}"):
                path.unlink()
        if (out / stem).is_dir() and not any((out / stem).iterdir()):
            (out / stem).rmdir()


def generate(
    out_dir,
    customers: int,
    *,
    seed: int = 42,
    fmt: str = "csv",
    dirty: float = 0.0,
    products: int | None = None,
    days: int = 0,
) -> dict[str, int]:
    """Write the four raw files into out_dir; return {file stem: row count}.

    With days > 0, customers, orders and order lines are folders raw_x/ of daily files instead
    (see the module's docstring); the counts are their totals, the same as without `days`."""
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', not {fmt!r}")
    if not 0.0 <= dirty <= 1.0:
        raise ValueError(f"dirty must be between 0 and 1, not {dirty}")
    if customers < 0:
        raise ValueError("customers must be >= 0")
    if days < 0:
        raise ValueError("days must be >= 0")
    if products is None:
        products = max(50, min(5000, customers // 200))
    # Values are spliced into SQL text (macros can't take bound parameters), so force the types.
    seed, customers, products, dirty, days = int(seed), int(customers), int(products), float(dirty), int(days)
    if products < 1:
        raise ValueError("products must be >= 1")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _clear_earlier_output(out)
    options = "FORMAT csv, HEADER" if fmt == "csv" else "FORMAT parquet"

    # No progress bar: the CLI promises a single summary line.
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(_sql(seed, customers, products))
        counts = dict.fromkeys(FILES, 0)
        targets = [(name, out / f"{name}.{fmt}", None, None) for name in FILES]
        if days:
            batches = _batches(con, days)
            targets = [
                (name, out / name / f"{name}_{suffix}.{fmt}", after, upto)
                for name in FILES[:3]
                for suffix, after, upto in batches
            ] + [targets[3]]
        for name, path, after, upto in targets:
            path.parent.mkdir(exist_ok=True)
            query = _copy_sql(dirty, products, after, upto)[name]
            quoted = str(path).replace("'", "''")
            counts[name] += con.execute(f"COPY ({query}) TO '{quoted}' ({options})").fetchone()[0]
    finally:
        con.close()
    return counts


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, required=True)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--dirty", type=float, default=0.0, help="fraction of rows to make dirty, 0..1")
    parser.add_argument("--products", type=int, default=None, help="catalogue size (default scales with customers)")
    parser.add_argument(
        "--days", type=int, default=0, help="write the last DAYS order dates as daily files in raw_x/ folders"
    )
    args = parser.parse_args(argv)

    start = time.perf_counter()
    counts = generate(
        args.out,
        args.customers,
        seed=args.seed,
        fmt=args.format,
        dirty=args.dirty,
        products=args.products,
        days=args.days,
    )
    seconds = time.perf_counter() - start
    summary = ", ".join(f"{name}={n:,}" for name, n in counts.items())
    daily = f" (the last {args.days} days as daily files)" if args.days else ""
    print(f"wrote {summary} to {args.out} as {args.format}{daily} in {seconds:.1f}s")


if __name__ == "__main__":
    main()
