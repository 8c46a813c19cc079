{{ config(
    materialized='view',
    tags=['staging']
) }}

with source as (
    select * from {{ ref('raw_customers') }}
),

cleaned as (
    select
        customer_id,
        lower(trim(email)) as email,
        initcap(trim(first_name)) as first_name,
        initcap(trim(last_name)) as last_name,
        upper(trim(country)) as country,
        cast(created_at as date) as customer_created_at,

        -- Data quality flags
        case
            when email is null or email = '' then false
            when email not like '%@%' then false
            else true
        end as is_valid_email,

        current_timestamp as dbt_loaded_at

    from source
)

select * from cleaned
where is_valid_email = true
