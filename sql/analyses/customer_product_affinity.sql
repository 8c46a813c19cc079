/*
description: Which customer bought which product how often (tutorial Module 8.3), over completed orders only - the input for recommendations and cross-selling. One row per customer and product.
tags: [customer, product]
columns:
  customer_id: {description: Customer}
  product_id: {description: Product}
  purchase_count: {description: Completed orders of the customer containing the product}
  total_spent: {description: Sum of the line totals (shipping excluded)}
*/
with orders as (
    select * from staging.stg_orders
    where is_completed
),

order_items as (
    select * from staging.stg_order_items
)

select
    o.customer_id,
    oi.product_id,
    count(*) as purchase_count,
    sum(oi.line_total) as total_spent
from orders as o
inner join order_items as oi on o.order_id = oi.order_id
group by o.customer_id, oi.product_id
-- No order by: sorting millions of pairs costs more than the rest of the query.
