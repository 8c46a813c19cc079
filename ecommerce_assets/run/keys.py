"""What a run changed in the raw tables, as key sets, and the `@changed(...)` filter that lets a
model rebuild only the keys those changes reach.

A model with `incremental_strategy: delete+insert` writes `@changed(<column>)` where its inputs
should be cut to what changed (`where @changed(order_id)`). In a full build the filter is `true`.
In an incremental build it keeps the keys in `CHANGED_KEYS`, and the run replaces the rows its
`replace_where` selects with what the filtered SQL returns. `@changed(expr, raw_table)` names the
raw table whose keys `expr` holds; alone, the column's name says it (`order_id` is raw_orders').

The key sets are closed under the lookups the models make, so a rebuilt key always sees all of
its input: an order is in the set when it, one of its lines, its customer or one of its products
changed; then every line of those orders, the products of those lines and the customers of
those orders are in too. Recomputing more keys than changed is always right, only slower.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ecommerce_assets.errors import ChangedMacroError
from ecommerce_assets.project.sources import LOADED_AT, RAW_TABLES
from ecommerce_assets.run.publish import DELTA_SUFFIX

# Relations of the run, not of the warehouse: the `__delta` suffix has the next run drop what a
# dead run left (publish.clean_up), and the run drops them after its publish.
CHANGED_KEYS = f"raw._changed_keys{DELTA_SUFFIX}"
# The keys the `equals_full_rebuild` checks compare: the changed ones and a slice of customers.
VERIFY_KEYS = f"raw._verify_keys{DELTA_SUFFIX}"
KEY_TABLES = (CHANGED_KEYS, VERIFY_KEYS)

# Key column -> the raw table it is the key of (every raw table's first column).
KEY_SOURCES = {next(iter(t.columns)): t.name for t in RAW_TABLES}
_RAW = {t.name: t for t in RAW_TABLES}

# NULL is a key too (rows rejected for null_key): compared through a value no id takes.
_NULL_KEY = "-9223372036854775808"

_MACRO = re.compile(r"@changed\(\s*([^(),]+?)\s*(?:,\s*(\w+)\s*)?\)", re.IGNORECASE)


def expand(sql: str, keys: str | None) -> str:
    """`sql` with every `@changed(expr[, raw_table])` made `true` (keys None: a full build) or a
    test that `expr` is one of the keys of that raw table in the `keys` table."""

    def replace(match: re.Match) -> str:
        expr, source = match.group(1), match.group(2)
        source = source or KEY_SOURCES.get(expr.rsplit(".", 1)[-1].lower())
        if source not in _RAW:
            raise ChangedMacroError(
                f"@changed({match.group(1)}): name the raw table its keys come from, "
                f"@changed(expr, raw_table) with one of {', '.join(_RAW)}"
            )
        if keys is None:
            return "true"
        return (
            f"(coalesce({expr}, {_NULL_KEY}) in "
            f"(select coalesce(key, {_NULL_KEY}) from {keys} where source = '{source}'))"
        )

    return _MACRO.sub(replace, sql)


def uses_changed(sql: str) -> bool:
    return bool(_MACRO.search(sql))


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
