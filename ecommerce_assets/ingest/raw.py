"""Raw loaders: the seed's four exports into schema `raw`, with explicit column types.

Hand-written because loading is special: files come from a directory the user chooses, as CSV
or Parquet, and a bad file must fail with a message naming the file, line and column while the
previous table stays in place (`create or replace table` is one atomic statement in DuckDB).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path

import duckdb

from ecommerce_assets.errors import RawLoadError
from ecommerce_assets.ingest import files as raw_files
from ecommerce_assets.ingest.files import read_sql, source_files
from ecommerce_assets.project.checks import CheckDecl, row_count_drop_check
from ecommerce_assets.run.publish import VOLUME_CHECKED_LAYERS, Pending, delta_name

SCHEMA = "raw"

# The column `load` adds after the declared ones (getvariable('run_started_at')), and its description.
LOADED_AT = ("_loaded_at", "timestamp", "When the run that loaded the row started (UTC)")


@dataclass(frozen=True)
class RawTable:
    name: str
    description: str
    columns: dict[str, str]  # name -> DuckDB type, in file order
    column_descriptions: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def layer(self) -> str:
        return SCHEMA

    @property
    def table(self) -> str:
        return f"{SCHEMA}.{self.name}"

    @property
    def table_columns(self) -> dict[str, str]:
        """The loaded table's columns and types: the declared ones, then `_loaded_at`."""
        return {**self.columns, LOADED_AT[0]: LOADED_AT[1]}

    @property
    def descriptions(self) -> dict[str, str]:
        return {**self.column_descriptions, LOADED_AT[0]: LOADED_AT[2]}

    @cached_property
    def checks(self) -> tuple[CheckDecl, ...]:
        """What a run checks on a loaded table: only that it did not suddenly shrink (its columns are
        typed by the load; the rows are checked by staging and the rejects)."""
        return (row_count_drop_check(self.table),) if SCHEMA in VOLUME_CHECKED_LAYERS else ()

    @cached_property
    def check_sql(self) -> dict[str, str]:
        return {c.name: c.failing_rows_sql(lambda name: name) for c in self.checks}

    @cached_property
    def check_count_sql(self) -> dict[str, str]:
        return {c.name: c.failing_count_sql(lambda name: name) for c in self.checks}

    @property
    def check_deps(self) -> dict[str, tuple[str, ...]]:
        return {c.name: () for c in self.checks}

    @property
    def path(self) -> Path:
        return Path(__file__)

    @cached_property
    def code_version(self) -> str:
        """Changes with the loader's code or the declared columns, not with a description."""
        return hashlib.sha256(f"{_loader_code()}\n{self.table_columns!r}".encode()).hexdigest()[:16]


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
        {
            "customer_id": "Customer id",
            "email": "Email address as entered: not lower-cased, may be empty or invalid",
            "first_name": "First name as entered",
            "last_name": "Last name as entered",
            "country": "Country code as entered, any case (US, UK, CA in the sample)",
            "created_at": "Date the customer account was created",
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
        {
            "order_id": "Order id",
            "customer_id": "Customer who placed the order (raw_customers.customer_id)",
            "order_date": "Date the order was placed",
            "status": "Order status as entered (completed, cancelled, ...)",
            "shipping_cost": "Shipping charged on the order",
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
        {
            "order_item_id": "Order line id",
            "order_id": "Order the line belongs to (raw_orders.order_id)",
            "product_id": "Product ordered (raw_products.product_id)",
            "quantity": "Units ordered (staging drops lines with 0 or fewer)",
            "unit_price": "Price paid per unit",
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
        {
            "product_id": "Product id",
            "product_name": "Product name as entered",
            "category": "Product category as entered (Electronics, Accessories in the sample)",
            "cost_price": "What one unit costs the shop",
            "list_price": "Catalogue price of one unit",
        },
    ),
)


@dataclass(frozen=True)
class LoadResult:
    mode: str  # 'replaced', 'appended' or 'unchanged'
    files: list[Path]  # the files read by this run
    pending: Pending | None = None  # what the run publishes (None: nothing changed)
    load_log_rows: list[list] = field(default_factory=list)  # rows the publish adds to the load log


def load(con: duckdb.DuckDBPyConnection, raw: RawTable, data_dir: Path, full_refresh: bool = False) -> LoadResult:
    """Stage what `raw.<name>` needs to match its files; `_loaded_at` is the run's timestamp.

    The cost follows what changed: files already loaded (same path, size and mtime) are not
    read again, new files in a folder are appended, and any other change reloads everything.
    Nothing published changes here: a reload is built as `raw.<name>__build`, new files go to
    `raw.<name>__delta` (and `__build` is then a view of the table and the delta), and the run's
    publish applies them and the load log together.
    """
    files = source_files(data_dir, raw)
    stamps = {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in files}
    create_load_log(con)
    loaded = (
        {}
        if full_refresh or not _exists(con, raw)
        else {
            f: (size, mtime)
            for f, size, mtime in con.execute(
                f"select file, size, mtime_ns from {LOAD_LOG} where table_name = ?", [raw.name]
            ).fetchall()
        }
    )
    append = bool(loaded) and all(stamps.get(f) == stamp for f, stamp in loaded.items())
    new = [p for p in files if str(p) not in loaded] if append else files
    if append and not new:
        return LoadResult("unchanged", [])
    pending = Pending(raw.table, "append" if append else "table")
    try:
        rows = read_sql(con, raw, new, LOADED_AT[0])
        if append:
            con.execute(f"create or replace table {delta_name(raw.table)} as {rows}")
            con.execute(
                f"create or replace view {pending.built} as "
                f"select * from {raw.table} union all select * from {delta_name(raw.table)}"
            )
        else:
            con.execute(f"create or replace table {pending.built} as {rows}")
    except duckdb.Error as e:
        # DuckDB's first paragraph names the line, the column and the value; the rest is generic advice.
        paragraphs = str(e).split("\n\n")
        where = (
            new[0]
            if len(new) == 1
            else next(
                (line.strip() for line in str(e).splitlines() if line.strip().startswith("file =")), new[0].parent
            )
        )
        raise RawLoadError(
            f"{where}: could not load into {raw.table} (the previous table is kept):\n{paragraphs[0]}"
        ) from e
    log_rows = [[raw.name, str(p), *stamps[str(p)]] for p in new]
    return LoadResult("appended" if append else "replaced", new, pending, log_rows)


LOAD_LOG = f"{SCHEMA}._loaded_files"


def create_load_log(con: duckdb.DuckDBPyConnection) -> None:
    """The table of files already loaded (path, size, mtime), which makes the next load incremental."""
    con.execute(
        f"create table if not exists {LOAD_LOG} (table_name varchar, file varchar, size bigint, mtime_ns bigint, loaded_at timestamp)"
    )


def _exists(con: duckdb.DuckDBPyConnection, raw: RawTable) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [SCHEMA, raw.name],
        ).fetchone()[0]
    )


@cache
def _loader_code() -> str:
    """This file without the RAW_TABLES declarations (each table adds its own columns to its code
    version), and the file reader: editing a description leaves the code versions alone, any other
    edit changes them."""
    text = Path(__file__).with_suffix(".py").read_text()
    start = text.find("\nRAW_TABLES = (")
    end = text.find("\n)\n", start)
    own = text if start < 0 or end < 0 else text[:start] + text[end:]
    return own + Path(raw_files.__file__).with_suffix(".py").read_text()
