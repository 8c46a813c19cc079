"""The raw tables: the seed's four exports as declared tables of schema `raw`, with explicit column types.

Declared by hand because their files come from a directory the user chooses (ingest/files.py reads
and validates them, run/duckdb/load.py loads them); the models read them as `raw.<name>`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ecommerce_assets.project.checks import VOLUME_CHECKED_LAYERS, CheckDecl, row_count_drop_check

SCHEMA = "raw"

# What a loaded table's rows are made of, beside its declared columns: bump it when a change to the
# loading (ingest/files.py reads, run/duckdb/load.py writes) changes the rows a file gives, so every raw
# table is reloaded once and what reads it rebuilt. A change that leaves the rows alone (a message,
# a speed-up, a move) keeps it.
LOADER_VERSION = "1"

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

    # A raw table reads no other node, is a table, and is reloaded from its files, not maintained.
    deps: tuple[str, ...] = field(default=(), init=False, repr=False)
    materialized: str = field(default="table", init=False, repr=False)
    maintained: bool = field(default=False, init=False, repr=False)

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
        """Changes with the loader's version or the declared columns, not with a description."""
        return hashlib.sha256(f"{LOADER_VERSION}\n{self.table_columns!r}".encode()).hexdigest()[:16]


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
