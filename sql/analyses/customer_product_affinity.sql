/*
description: Which customer bought which product how often (tutorial Module 8.3), over completed orders only - the input for recommendations and cross-selling. One row per customer and product.
tags: [customer, product]
materialized: incremental
# Rebuilt only for the customers the run's changes reach, like the pairs it reads.
incremental_strategy: delete+insert
unique_key: customer_id
columns:
  customer_id: {description: Customer}
  product_id: {description: Product}
  purchase_count: {description: "Order lines of the product in the customer's completed orders (the seed's count(*) over lines)"}
  total_spent: {description: Sum of the line totals (shipping excluded)}
*/
select
    customer_id,
    product_id,
    lines_count as purchase_count,
    revenue as total_spent
from intermediate.int_customer_product_sales
where @changed(customer_id)
