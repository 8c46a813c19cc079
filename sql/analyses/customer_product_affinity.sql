/*
description: Which customer bought which product how often (tutorial Module 8.3), over completed orders only - the input for recommendations and cross-selling. One row per customer and product.
tags: [customer, product]
columns:
  customer_id:
    description: Customer
    checks:
      - not_null
      - relationships: {to: stg_customers, field: customer_id}
  product_id:
    description: Product
    checks:
      - not_null
      - relationships: {to: stg_products, field: product_id}
  purchase_count: {description: Completed orders of the customer containing the product}
  total_spent: {description: Sum of the line totals (shipping excluded)}
checks:
  - name: one_row_per_customer_and_product
    description: Each (customer_id, product_id) pair appears once.
    sql: |
      select customer_id, product_id, count(*) as occurrences
      from analyses.customer_product_affinity
      group by customer_id, product_id
      having count(*) > 1
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
    count(distinct o.order_id) as purchase_count,
    sum(oi.line_total) as total_spent
from orders as o
inner join order_items as oi on o.order_id = oi.order_id
group by o.customer_id, oi.product_id
order by o.customer_id, purchase_count desc, total_spent desc, oi.product_id
