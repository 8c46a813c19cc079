/*
description: Sales of each product in completed orders, with margins; one row per product, unsold products included with zeros.
tags: [product]
columns:
  product_id:
    description: Primary key
    checks: [unique, not_null]
  product_name: {description: Product name}
  category: {description: Product category}
  cost_price: {description: Unit cost}
  list_price: {description: Unit list price}
  profit_margin: {description: list_price - cost_price}
  profit_margin_pct: {description: Margin as a percentage of list price}
  orders_count: {description: Completed orders containing the product}
  customers_count: {description: Distinct customers who bought it}
  units_sold: {description: Units sold in completed orders}
  revenue: {description: Sum of line totals in completed orders (shipping excluded)}
  avg_selling_price: {description: Average unit price paid per order line}
  total_profit: {description: revenue - units_sold * cost_price}
  first_sale_date: {description: First completed sale}
  last_sale_date: {description: Last completed sale}
*/
with products as (
    select * from staging.stg_products
),

-- From the customer x product pairs, maintained per customer: distinct customers are pairs, and
-- distinct orders add up over customers since an order has one customer.
product_sales as (
    select
        product_id,
        sum(orders_count)::bigint as orders_count,
        count(*) as customers_count,
        sum(units_sold) as units_sold,
        sum(revenue) as revenue,
        sum(unit_price_sum)::double / sum(lines_count) as avg_selling_price,
        min(first_sale_date) as first_sale_date,
        max(last_sale_date) as last_sale_date
    from intermediate.int_customer_product_sales
    group by product_id
)

select
    p.product_id,
    p.product_name,
    p.category,
    p.cost_price,
    p.list_price,
    p.profit_margin,
    p.profit_margin_pct,
    coalesce(ps.orders_count, 0) as orders_count,
    coalesce(ps.customers_count, 0) as customers_count,
    coalesce(ps.units_sold, 0) as units_sold,
    coalesce(ps.revenue, 0) as revenue,
    coalesce(ps.avg_selling_price, 0) as avg_selling_price,
    coalesce(ps.revenue - ps.units_sold * p.cost_price, 0) as total_profit,
    ps.first_sale_date,
    ps.last_sale_date
from products as p
left join product_sales as ps on p.product_id = ps.product_id
