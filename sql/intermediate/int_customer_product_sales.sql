/*
description: >-
  What each customer bought of each product in completed orders, one row per customer and
  product. The pair table behind the exact distinct counts: a product's customers are its rows
  here, its orders the sum of orders_count (an order has one customer). A run rebuilds only the
  customers its changes reach.
tags: [customer, product]
materialized: incremental
incremental_strategy: delete+insert
unique_key: customer_id
columns:
  customer_id:
    description: Customer
    checks: [not_null]
  product_id:
    description: Product
    checks: [not_null]
  orders_count: {description: Completed orders of the customer containing the product}
  lines_count: {description: Order lines of the product in those orders}
  units_sold: {description: Units of the product in those orders}
  revenue: {description: Sum of the line totals (shipping excluded)}
  unit_price_sum: {description: "Sum of the lines' unit prices: the average selling price is unit_price_sum / lines_count"}
  first_sale_date: {description: First completed order of the customer with the product}
  last_sale_date: {description: Last completed order of the customer with the product}
*/
with orders as (
    select * from staging.stg_orders
    where is_completed and @changed(customer_id)
),

order_items as (
    select * from staging.stg_order_items
),

-- One row per order and product first: counting the orders is then a count, not a distinct
-- count (which costs ten times more over millions of pairs).
order_products as (
    select
        o.customer_id,
        oi.product_id,
        o.order_date,
        count(*) as lines_count,
        sum(oi.quantity) as units_sold,
        sum(oi.line_total) as revenue,
        sum(oi.unit_price) as unit_price_sum
    from orders as o
    inner join order_items as oi on o.order_id = oi.order_id
    group by o.customer_id, oi.product_id, o.order_id, o.order_date
)

select
    customer_id,
    product_id,
    count(*) as orders_count,
    sum(lines_count)::bigint as lines_count,
    sum(units_sold) as units_sold,
    sum(revenue) as revenue,
    sum(unit_price_sum) as unit_price_sum,
    min(order_date) as first_sale_date,
    max(order_date) as last_sale_date
from order_products
group by customer_id, product_id
