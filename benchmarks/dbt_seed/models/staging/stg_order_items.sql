{{ config(
    materialized='view',
    tags=['staging']
) }}

with source as (
    select * from {{ ref('raw_order_items') }}
),

cleaned as (
    select
        order_item_id,
        order_id,
        product_id,
        cast(quantity as integer) as quantity,
        cast(unit_price as decimal(10,2)) as unit_price,
        cast(quantity * unit_price as decimal(10,2)) as line_total,

        current_timestamp as dbt_loaded_at

    from source
    where quantity > 0  -- Data quality filter
)

select * from cleaned
