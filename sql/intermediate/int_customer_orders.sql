/*
description: One row per completed order with its item subtotal and total (items + shipping). A completed order without items still counts its shipping.
tags: [customer]
materialized: incremental
# Order grain: a run rebuilds only the orders its raw changes reach.
incremental_strategy: delete+insert
unique_key: order_id
columns:
  order_id:
    description: Primary key (completed orders only)
    checks: [unique, not_null]
  customer_id:
    description: Customer who placed the order
    checks: [not_null]
  order_date: {description: Date the order was placed}
  shipping_cost: {description: Shipping charged on the order}
  order_subtotal: {description: Sum of the order's line totals (0 when it has no items)}
  order_total: {description: order_subtotal + shipping_cost}
  items_count: {description: Number of order lines}
checks:
  - name: completed_orders_have_items
    description: Every completed order has at least one order line.
    sql: select * from intermediate.int_customer_orders where items_count = 0
  - name: order_total_positive
    description: Every completed order is worth something.
    sql: select * from intermediate.int_customer_orders where order_total <= 0
*/
with orders as (
    select * from staging.stg_orders
    where is_completed and @changed(order_id)
),

order_items as (
    select * from staging.stg_order_items
    where @changed(order_id)
),

item_totals as (
    select
        order_id,
        sum(line_total) as order_subtotal,
        count(order_item_id) as items_count
    from order_items
    group by order_id
)

select
    o.order_id,
    o.customer_id,
    o.order_date,
    o.shipping_cost,
    -- 38 digits: the most order lines of the largest legal quantity and unit price still add up.
    cast(coalesce(i.order_subtotal, 0) as decimal(38, 2)) as order_subtotal,
    cast(coalesce(i.order_subtotal, 0) + o.shipping_cost as decimal(38, 2)) as order_total,
    coalesce(i.items_count, 0) as items_count
from orders as o
left join item_totals as i on o.order_id = i.order_id
