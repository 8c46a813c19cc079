"""Raw loaders: the seed's four exports into schema `raw`, with explicit column types.

Hand-written because loading is special: files come from a directory the user chooses, as CSV
or Parquet, and a bad file must fail with a message naming the file, line and column while the
previous table stays in place (`create or replace table` is one atomic statement in DuckDB).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

SCHEMA = "raw"


@dataclass(frozen=True)
class RawTable:
    name: str
    description: str
    columns: dict[str, str]  # name -> DuckDB type, in file order

    @property
    def table(self) -> str:
        return f"{SCHEMA}.{self.name}"


MONEY = "decimal(18, 2)"

RAW_TABLES = (
    RawTable(
        "raw_customers",
        "Customer export, one row per customer account, as delivered.",
        {
            "customer_id": "bigint",
            "email": "varchar",
            "first_name": "varchar",
            "last_name": "varchar",
            "country": "varchar",
            "created_at": "date",
        },
    ),
    RawTable(
        "raw_orders",
        "Order export, one row per order, with its status and shipping cost.",
        {
            "order_id": "bigint",
            "customer_id": "bigint",
            "order_date": "date",
            "status": "varchar",
            "shipping_cost": MONEY,
        },
    ),
    RawTable(
        "raw_order_items",
        "Order line export, one row per product line of an order.",
        {
            "order_item_id": "bigint",
            "order_id": "bigint",
            "product_id": "bigint",
            "quantity": "integer",
            "unit_price": MONEY,
        },
    ),
    RawTable(
        "raw_products",
        "Product catalogue export with cost and list prices.",
        {
            "product_id": "bigint",
            "product_name": "varchar",
            "category": "varchar",
            "cost_price": MONEY,
            "list_price": MONEY,
        },
    ),
)


class RawLoadError(RuntimeError):
    pass


def source_file(data_dir: Path, raw: RawTable) -> Path:
    candidates = [p for p in (data_dir / f"{raw.name}.csv", data_dir / f"{raw.name}.parquet") if p.exists()]
    if not candidates:
        raise RawLoadError(
            f"{raw.table}: no {raw.name}.csv or {raw.name}.parquet in {data_dir} "
            "(set ECOMMERCE_DATA_DIR or the run config data_dir)"
        )
    if len(candidates) > 1:
        raise RawLoadError(f"{raw.table}: both {candidates[0].name} and {candidates[1].name} are in {data_dir}; keep one")
    return candidates[0]


def load(con: duckdb.DuckDBPyConnection, raw: RawTable, data_dir: Path) -> Path:
    """Replace `raw.<name>` with the file's rows; `_loaded_at` is the run's timestamp."""
    path = source_file(data_dir, raw)
    if path.suffix == ".csv":
        _check_header(path, raw, _csv_header(path))
        columns = ", ".join(f"'{c}': '{t}'" for c, t in raw.columns.items())
        source = (
            f"read_csv('{_quote(path)}', header = true, auto_detect = false, delim = ',', "
            f"quote = '\"', escape = '\"', dateformat = '%Y-%m-%d', columns = {{{columns}}})"
        )
        select = "*"
    else:
        found = [r[0] for r in con.execute(f"describe select * from read_parquet('{_quote(path)}')").fetchall()]
        missing = [c for c in raw.columns if c not in found]
        if missing:
            raise RawLoadError(f"{path}: missing columns {missing} (found {found})")
        source = f"read_parquet('{_quote(path)}')"
        select = ", ".join(f"cast({c} as {t}) as {c}" for c, t in raw.columns.items())
    try:
        con.execute(
            f"create or replace table {raw.table} as "
            f"select {select}, getvariable('run_started_at') as _loaded_at from {source}"
        )
    except duckdb.Error as e:
        # DuckDB's first paragraph names the line, the column and the value; the rest is generic advice.
        detail = str(e).split("\n\n")[0]
        raise RawLoadError(f"{path}: could not load into {raw.table} (the previous table is kept):\n{detail}") from e
    return path


def _csv_header(path: Path) -> list[str]:
    with path.open(newline="") as f:
        return [c.strip().strip('"') for c in f.readline().rstrip("\r\n").split(",")]


def _check_header(path: Path, raw: RawTable, header: list[str]) -> None:
    expected = list(raw.columns)
    if header != expected:
        raise RawLoadError(f"{path}: header is {header}, expected the columns {expected} in this order")


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")
