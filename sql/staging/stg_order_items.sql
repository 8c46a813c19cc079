/*
description: Cleaned order line items; lines with a non-positive quantity are dropped.
tags: [product]
columns:
  order_item_id:
    description: Primary key for order lines
    checks: [unique, not_null]
  order_id:
    description: Foreign key to orders
    checks:
      - not_null
      - relationships: {to: stg_orders, field: order_id}
  product_id:
    description: Foreign key to products
    checks:
      - relationships: {to: stg_products, field: product_id}
  quantity: {description: Units ordered (always positive here)}
  unit_price: {description: Price paid per unit}
  line_total: {description: quantity * unit_price}
  loaded_at: {description: When the raw row was loaded (the run's timestamp)}
checks:
  - name: no_lines_dropped
    description: No raw order line has a non-positive quantity (staging drops such lines, so their revenue is lost).
    sql: select * from raw.raw_order_items where quantity <= 0 or quantity is null
  - name: unit_price_positive
    description: Every order line has a positive unit price.
    sql: select * from staging.stg_order_items where unit_price <= 0
*/
with source as (
    select * from raw.raw_order_items
)

select
    order_item_id,
    order_id,
    product_id,
    quantity,
    unit_price,
    cast(quantity * unit_price as decimal(18, 2)) as line_total,
    _loaded_at as loaded_at
from source
where quantity > 0
