{{ config(
    materialized='view',
    tags=['staging']
) }}

with source as (
    select * from {{ ref('raw_products') }}
),

cleaned as (
    select
        product_id,
        trim(product_name) as product_name,
        initcap(trim(category)) as category,
        cast(cost_price as decimal(10,2)) as cost_price,
        cast(list_price as decimal(10,2)) as list_price,
        cast(list_price - cost_price as decimal(10,2)) as profit_margin,
        cast((list_price - cost_price) / list_price * 100 as decimal(5,2)) as profit_margin_pct,

        current_timestamp as dbt_loaded_at

    from source
)

select * from cleaned
