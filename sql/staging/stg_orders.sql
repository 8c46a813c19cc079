/*
description: Cleaned and enriched order data, one row per order.
tags: [customer]
columns:
  order_id:
    description: Primary key for orders
    checks: [unique, not_null]
  customer_id:
    description: Foreign key to customers
    checks:
      - not_null
      - relationships: {to: stg_customers, field: customer_id}
  order_date: {description: Date the order was placed}
  order_status: {description: "Order status, trimmed and lower-cased (completed, cancelled, ...)"}
  shipping_cost: {description: Shipping charged on the order}
  order_year: {description: Calendar year of order_date}
  order_month: {description: Calendar month of order_date}
  order_quarter: {description: Calendar quarter of order_date}
  order_day_of_week: {description: English day name of order_date}
  is_completed: {description: True when the cleaned status is 'completed'; only these orders count as revenue}
  loaded_at: {description: When the raw row was loaded (the run's timestamp)}
checks:
  - name: shipping_cost_not_negative
    description: Shipping cost is never negative.
    sql: select * from staging.stg_orders where shipping_cost < 0
*/
-- Every raw row but those stg_rejected_rows rejects (and records there with their reason).
with source as (
    select raw_row.*
    from raw.raw_orders as raw_row
    anti join staging.stg_rejected_rows as rejected
        on rejected.source = 'raw_orders' and rejected.key is not distinct from raw_row.order_id
)

select
    order_id,
    customer_id,
    order_date,
    lower(trim(status)) as order_status,
    shipping_cost,
    year(order_date) as order_year,
    month(order_date) as order_month,
    quarter(order_date) as order_quarter,
    dayname(order_date) as order_day_of_week,
    coalesce(lower(trim(status)) = 'completed', false) as is_completed,
    _loaded_at as loaded_at
from source
