/*
description: >-
  Raw rows kept out of the models, one row per rejected raw row, with the first rule it breaks.
  The staging views leave out exactly these rows (an anti-join on source and key), so every raw
  row is in staging or here. A row is rejected when its key is missing or duplicated, a reference
  is missing, unknown or points at a rejected row, a quantity is not positive, a price or the
  shipping cost is negative or the shipping cost missing, a line has no price, a date lies after the day the run started, or
  the order status is unknown.
materialized: incremental
# A run recomputes only the keys its raw changes reach (see run/keys.py), per source.
incremental_strategy: delete+insert
unique_key: key
replace_where: >-
  source = 'raw_customers' and @changed(key, raw_customers)
  or source = 'raw_orders' and @changed(key, raw_orders)
  or source = 'raw_order_items' and @changed(key, raw_order_items)
  or source = 'raw_products' and @changed(key, raw_products)
columns:
  source: {description: "Raw table the row came from (raw_customers, raw_orders, raw_order_items, raw_products)"}
  key:
    description: >-
      The row's primary key in its raw table (NULL for reason null_key). Every raw row with this
      source and key is rejected: a duplicated key rejects all its copies, since none can be
      told right.
  line: {description: "Line of the row in its file; NULL: the raw tables do not record lines yet"}
  reason:
    description: >-
      The first rule the row breaks: null_key, duplicate_key, null_<reference>_id,
      unknown_<reference>_id (no such row), rejected_<reference>_id (that row is rejected here),
      quantity_not_positive, negative_<price column>, null_unit_price, null_shipping_cost, null_order_date,
      <date column>_in_future (after the UTC day the run started), unknown_status
  raw_values: {description: "The raw row's values as loaded, as a JSON object"}
  loaded_at: {description: When the raw row was loaded (the run's timestamp)}
  run_started_at: {description: "Start of the run that rejected the row (UTC): the first run to reject it, while the row's reason stays the same"}
checks:
  - name: rows_rejected
    description: No raw row is rejected. Fails with one row per source and reason, and how many rows it rejected.
    sql: |
      select source, reason, count(*) as rejected_rows, min(key) as first_key
      from @this_model
      group by source, reason
      order by source, reason
*/
-- Each rule is written once, here; the rules of a table are one `case`, so a row gets the
-- first reason that applies. A reference to a rejected row is itself rejected, so dropping a
-- customer never leaves its orders or their lines as orphans in staging. The filters on changed keys
-- keep every copy of a key (the duplicate count is per key) and every row the kept rows look up.
with
-- Duplicated keys are found by a group-by and joined back: a `count(*) over (partition by key)`
-- window says the same, at ~5x the cost over millions of order lines.
duplicate_customers as (
    select customer_id from raw.raw_customers
    where customer_id is not null and @changed(customer_id)
    group by customer_id having count(*) > 1
),

customers as (
    select
        c.*,
        case
            when c.customer_id is null then 'null_key'
            when d.customer_id is not null then 'duplicate_key'
            when c.created_at > cast(getvariable('run_started_at') as date) then 'created_at_in_future'
        end as reason
    from raw.raw_customers as c
    left join duplicate_customers as d on c.customer_id = d.customer_id
    where @changed(c.customer_id)
),

customer_keys as (
    select customer_id, bool_and(reason is null) as accepted
    from customers
    where customer_id is not null
    group by customer_id
),

duplicate_orders as (
    select order_id from raw.raw_orders
    where order_id is not null and @changed(order_id)
    group by order_id having count(*) > 1
),

orders as (
    select
        o.*,
        case
            when o.order_id is null then 'null_key'
            when d.order_id is not null then 'duplicate_key'
            when o.customer_id is null then 'null_customer_id'
            when c.customer_id is null then 'unknown_customer_id'
            when not c.accepted then 'rejected_customer_id'
            when o.order_date is null then 'null_order_date'
            when o.order_date > cast(getvariable('run_started_at') as date) then 'order_date_in_future'
            -- The statuses an order may have, cleaned as stg_orders cleans them; anything else is
            -- neither revenue nor a known non-sale.
            when not coalesce(lower(trim(o.status)) in ('completed', 'cancelled', 'returned', 'pending'), false)
                then 'unknown_status'
            -- A NULL shipping cost would make the order's total NULL and drop it from every sum.
            when o.shipping_cost is null then 'null_shipping_cost'
            when o.shipping_cost < 0 then 'negative_shipping_cost'
        end as reason
    from raw.raw_orders as o
    left join duplicate_orders as d on o.order_id = d.order_id
    left join customer_keys as c on o.customer_id = c.customer_id
    where @changed(o.order_id)
),

duplicate_products as (
    select product_id from raw.raw_products
    where product_id is not null and @changed(product_id)
    group by product_id having count(*) > 1
),

products as (
    select
        p.*,
        case
            when p.product_id is null then 'null_key'
            when d.product_id is not null then 'duplicate_key'
            -- A price of 0 is a free product: kept, and stg_products' prices_positive warns.
            when p.cost_price < 0 then 'negative_cost_price'
            when p.list_price < 0 then 'negative_list_price'
        end as reason
    from raw.raw_products as p
    left join duplicate_products as d on p.product_id = d.product_id
    where @changed(p.product_id)
),

order_keys as (
    select order_id, bool_and(reason is null) as accepted
    from orders
    where order_id is not null
    group by order_id
),

product_keys as (
    select product_id, bool_and(reason is null) as accepted
    from products
    where product_id is not null
    group by product_id
),

duplicate_order_items as (
    select order_item_id from raw.raw_order_items
    where order_item_id is not null and @changed(order_item_id)
    group by order_item_id having count(*) > 1
),

order_items as (
    select
        i.*,
        case
            when i.order_item_id is null then 'null_key'
            when d.order_item_id is not null then 'duplicate_key'
            when i.order_id is null then 'null_order_id'
            when o.order_id is null then 'unknown_order_id'
            when not o.accepted then 'rejected_order_id'
            when i.product_id is null then 'null_product_id'
            when p.product_id is null then 'unknown_product_id'
            when not p.accepted then 'rejected_product_id'
            when not coalesce(i.quantity > 0, false) then 'quantity_not_positive'
            -- A line at price 0 is a gift: kept, and stg_order_items' unit_price_positive warns.
            when i.unit_price is null then 'null_unit_price'
            when i.unit_price < 0 then 'negative_unit_price'
        end as reason
    from raw.raw_order_items as i
    left join duplicate_order_items as d on i.order_item_id = d.order_item_id
    left join order_keys as o on i.order_id = o.order_id
    left join product_keys as p on i.product_id = p.product_id
    where @changed(i.order_item_id)
)

select
    'raw_customers' as source,
    customer_id as key,
    cast(null as bigint) as line,
    reason,
    json_object(
        'customer_id', customer_id, 'email', email, 'first_name', first_name, 'last_name', last_name,
        'country', country, 'created_at', created_at
    ) as raw_values,
    _loaded_at as loaded_at,
    getvariable('run_started_at') as run_started_at
from customers
where reason is not null

union all

select
    'raw_orders',
    order_id,
    null,
    reason,
    json_object(
        'order_id', order_id, 'customer_id', customer_id, 'order_date', order_date, 'status', status,
        'shipping_cost', shipping_cost
    ),
    _loaded_at,
    getvariable('run_started_at')
from orders
where reason is not null

union all

select
    'raw_order_items',
    order_item_id,
    null,
    reason,
    json_object(
        'order_item_id', order_item_id, 'order_id', order_id, 'product_id', product_id, 'quantity', quantity,
        'unit_price', unit_price
    ),
    _loaded_at,
    getvariable('run_started_at')
from order_items
where reason is not null

union all

select
    'raw_products',
    product_id,
    null,
    reason,
    json_object(
        'product_id', product_id, 'product_name', product_name, 'category', category,
        'cost_price', cost_price, 'list_price', list_price
    ),
    _loaded_at,
    getvariable('run_started_at')
from products
where reason is not null
