/*
description: The 20 best-selling Star and Performer products (tutorial question "which products carry the business?"), highest revenue first. The materialization also charts revenue by performance tier and category over all products.
tags: [product]
columns:
  product_id: {description: Product}
  performance_tier: {description: Star (top 20% revenue) or Performer (above the median)}
  category: {description: Product category}
  product_name: {description: Product name}
  revenue: {description: Revenue in completed orders (shipping excluded)}
  total_profit: {description: revenue - units_sold * cost_price}
  profit_margin_pct: {description: List-price margin as a percentage of the list price}
  units_sold: {description: Units sold in completed orders}
*/
with product_performance as (
    select * from marts.fct_product_performance
)

select
    product_id,
    performance_tier,
    category,
    product_name,
    revenue,
    total_profit,
    profit_margin_pct,
    units_sold
from product_performance
where performance_tier in ('Star', 'Performer')
order by revenue desc, product_id
limit 20
