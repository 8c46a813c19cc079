/*
description: >-
  Completed-order totals of each customer who has one, kept as exact sums (money in decimals) so
  that a run updates only the customers its changes reach; the date-relative measures (recency,
  scores, trends) are computed from it on every run.
tags: [customer]
materialized: incremental
incremental_strategy: delete+insert
unique_key: customer_id
columns:
  customer_id:
    description: Primary key (customers with at least one completed order)
    checks: [unique, not_null]
  orders_count: {description: Number of completed orders}
  order_total_sum: {description: Sum of the completed orders' totals (shipping included)}
  min_order_total: {description: Smallest completed order total}
  max_order_total: {description: Largest completed order total}
  first_order_date: {description: First completed order date}
  last_order_date: {description: Last completed order date}
*/
select
    customer_id,
    count(*) as orders_count,
    sum(order_total) as order_total_sum,
    min(order_total) as min_order_total,
    max(order_total) as max_order_total,
    min(order_date) as first_order_date,
    max(order_date) as last_order_date
from intermediate.int_customer_orders
where @changed(customer_id)
group by customer_id
