/*
description: Cleaned product data with profit calculations.
tags: [product]
columns:
  product_id:
    description: Primary key for products
    checks: [unique, not_null]
  product_name: {description: "Product name, trimmed"}
  category: {description: "Product category, trimmed and capitalized"}
  cost_price: {description: What one unit costs us}
  list_price: {description: Catalogue price of one unit}
  profit_margin: {description: list_price - cost_price}
  profit_margin_pct: {description: Margin as a percentage of list price; NULL when the list price is 0}
  loaded_at: {description: When the raw row was loaded (the run's timestamp)}
checks:
  - name: prices_positive
    description: Cost and list prices are positive.
    sql: select * from staging.stg_products where cost_price <= 0 or list_price <= 0
*/
-- Every raw row but those stg_rejected_rows rejects (and records there with their reason).
with source as (
    select raw_row.*
    from raw.raw_products as raw_row
    anti join staging.stg_rejected_rows as rejected
        on rejected.source = 'raw_products' and rejected.key is not distinct from raw_row.product_id
)

select
    product_id,
    trim(product_name) as product_name,
    initcap(trim(category)) as category,
    cost_price,
    list_price,
    cast(list_price - cost_price as decimal(18, 2)) as profit_margin,
    -- A cost far above a list price of a cent is a margin of up to -10^20 percent: 38 digits hold it.
    cast((list_price - cost_price) / nullif(list_price, 0) * 100 as decimal(38, 2)) as profit_margin_pct,
    _loaded_at as loaded_at
from source
