/*
description: Cleaned order line items; lines rejected by stg_rejected_rows (a non-positive quantity or price, an unknown or rejected order or product, ...) are left out.
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
  - name: every_raw_row_accounted_for
    description: Every raw row of the four raw tables is either in its staging view or in stg_rejected_rows, so no row disappears without a reason.
    severity: error
    sql: |
      with counted as (
          select 'raw_customers' as source, (select count(*) from raw.raw_customers) as raw_rows,
              (select count(*) from staging.stg_customers) as staged_rows
          union all
          select 'raw_orders', (select count(*) from raw.raw_orders), (select count(*) from staging.stg_orders)
          union all
          select 'raw_order_items', (select count(*) from raw.raw_order_items), (select count(*) from staging.stg_order_items)
          union all
          select 'raw_products', (select count(*) from raw.raw_products), (select count(*) from staging.stg_products)
      )
      select c.source, c.raw_rows, c.staged_rows, count(r.source) as rejected_rows
      from counted as c
      left join staging.stg_rejected_rows as r on r.source = c.source
      group by c.source, c.raw_rows, c.staged_rows
      having c.raw_rows <> c.staged_rows + count(r.source)
  - name: unit_price_positive
    description: Every order line has a positive unit price.
    sql: select * from staging.stg_order_items where unit_price <= 0
*/
-- Every raw row but those stg_rejected_rows rejects (and records there with their reason).
with source as (
    select raw_row.*
    from raw.raw_order_items as raw_row
    anti join staging.stg_rejected_rows as rejected
        on rejected.source = 'raw_order_items' and rejected.key is not distinct from raw_row.order_item_id
)

select
    order_item_id,
    order_id,
    product_id,
    quantity,
    unit_price,
    -- The largest legal quantity (integer) times the largest legal unit price (decimal(18, 2))
    -- needs 28 digits: every raw value the types accept gives a line total.
    quantity * cast(unit_price as decimal(38, 2)) as line_total,
    _loaded_at as loaded_at
from source
