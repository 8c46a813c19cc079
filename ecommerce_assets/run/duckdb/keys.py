"""What a run changed in the raw tables, as closed key sets (the `@changed(...)` filter that reads
them: project/changed.py).

The key sets are closed under the lookups the models make, so a rebuilt key always sees all of
its input: an order is in the set when it, one of its lines, its customer or one of its products
changed; then every line of those orders, the products of those lines and the customers of
those orders are in too. Recomputing more keys than changed is always right, only slower.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ecommerce_assets.project.changed import CHANGED_KEYS, KEY_TABLES, VERIFY_KEYS
from ecommerce_assets.project.sources import LOADED_AT, RAW_TABLES

__all__ = ["CHANGED_KEYS", "KEY_TABLES", "VERIFY_KEYS", "RawChange", "all_keys_statement", "keys_statement"]

_RAW = {t.name: t for t in RAW_TABLES}


@dataclass(frozen=True)
class RawChange:
    """How one raw table changes in this run: `published` is the table before the run (None when
    there is none), `current` what the run reads, `delta` the appended rows' table when the run
    only appends (None: compare `current` with `published` row by row)."""

    published: str | None
    current: str
    delta: str | None = None


def _seed(name: str, change: RawChange | None) -> str:
    """The keys of the rows the run added, removed or altered in one raw table."""
    key = next(iter(_RAW[name].columns))
    if change is None or change.published in (None, change.current) and change.delta is None:
        return "select null::bigint as key where false"
    if change.delta:
        return f"select {key} as key from {change.delta}"
    old = f"select * exclude ({LOADED_AT[0]}) from {change.published}"
    new = f"select * exclude ({LOADED_AT[0]}) from {change.current}"
    return (
        f"select {key} as key from ({new} except all {old}) union all select {key} as key from ({old} except all {new})"
    )


def _both(change: RawChange, columns: str) -> str:
    """The rows before and after the run: a key's old and new references both count."""
    if change.published is None or change.published == change.current:
        return f"select {columns} from {change.current}"
    if change.delta:
        return f"select {columns} from {change.published} union all select {columns} from {change.delta}"
    return f"select {columns} from {change.published} union all select {columns} from {change.current}"


def keys_statement(
    target: str,
    changes: Mapping[str, RawChange],
    since: str | None,
    customer_slice: tuple[int, int] | None = None,
) -> str:
    """`create table target(source, key)`: the closed key sets of the run's raw changes.

    `since`: the date (SQL expression) of the last build of the maintained tables; rows dated
    after it and up to the run's date may have stopped being rejected as in the future.
    `customer_slice` (slices, slot): also every customer whose id hashes to the slot, so that the
    checks compare a rotating share of all rows besides what changed."""
    orders, items, customers = changes["raw_orders"], changes["raw_order_items"], changes["raw_customers"]
    run_date = "cast(getvariable('run_started_at') as date)"
    flipped = (
        (
            f"union all select customer_id from {customers.current} where created_at > {since} and created_at <= {run_date}",
            f"union all select order_id from {orders.current} where order_date > {since} and order_date <= {run_date}",
        )
        if since
        else ("", "")
    )
    sliced = ""
    if customer_slice and customer_slice[0] > 1:
        slices, slot = customer_slice
        sliced = f"union all select customer_id from {customers.current} where hash(customer_id) % {slices} = {slot}"
    return f"""
create or replace table {target} as
with
seed_customers as ({_seed("raw_customers", customers)} {flipped[0]} {sliced}),
seed_orders as ({_seed("raw_orders", orders)} {flipped[1]}),
seed_items as ({_seed("raw_order_items", items)}),
seed_products as ({_seed("raw_products", changes["raw_products"])}),
all_orders as ({_both(orders, "order_id, customer_id")}),
all_items as ({_both(items, "order_item_id, order_id, product_id")}),
order_keys as (
    select key from seed_orders
    union select order_id from all_items where order_item_id in (select key from seed_items)
    union select order_id from all_orders where customer_id in (select key from seed_customers)
    union select order_id from all_items where product_id in (select key from seed_products)
),
item_keys as (
    select key from seed_items
    union select order_item_id from all_items where order_id in (select key from order_keys)
),
product_keys as (
    select key from seed_products
    union select product_id from all_items where order_item_id in (select key from item_keys)
),
customer_keys as (
    select key from seed_customers
    union select customer_id from all_orders where order_id in (select key from order_keys)
)
select distinct 'raw_customers' as source, key from customer_keys
union all select distinct 'raw_orders', key from order_keys
union all select distinct 'raw_order_items', key from item_keys
union all select distinct 'raw_products', key from product_keys
"""


def all_keys_statement(target: str, changes: Mapping[str, RawChange]) -> str:
    """Every key of every raw table: the checks then compare whole tables."""
    parts = []
    for name, change in changes.items():
        key = next(iter(_RAW[name].columns))
        parts.append(f"select distinct '{name}' as source, {key} as key from ({_both(change, key)})")
    return f"create or replace table {target} as\n" + "\nunion all ".join(parts)
