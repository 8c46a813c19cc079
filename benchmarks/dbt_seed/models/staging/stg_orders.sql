{{ config(
    materialized='view',
    tags=['staging']
) }}

with source as (
    select * from {{ ref('raw_orders') }}
),

cleaned as (
    select
        order_id,
        customer_id,
        cast(order_date as date) as order_date,
        lower(trim(status)) as order_status,
        cast(shipping_cost as decimal(10,2)) as shipping_cost,

        -- Derived fields
        extract(year from cast(order_date as date)) as order_year,
        extract(month from cast(order_date as date)) as order_month,
        extract(quarter from cast(order_date as date)) as order_quarter,
        dayname(cast(order_date as date)) as order_day_of_week,

        -- Data quality flags
        case when status = 'completed' then true else false end as is_completed,

        current_timestamp as dbt_loaded_at

    from source
)

select * from cleaned
