{{ config(
    materialized='table',
    tags=['marts', 'product']
) }}

with product_metrics as (
    select * from {{ ref('int_product_metrics') }}
),

ranked_products as (
    select
        *,

        -- Rankings
        row_number() over (order by revenue desc) as revenue_rank,
        row_number() over (order by units_sold desc) as units_rank,
        row_number() over (order by total_profit desc) as profit_rank,

        -- Category share
        revenue / sum(revenue) over (partition by category) as category_revenue_share,

        -- Performance classification
        case
            when revenue >= (select percentile_cont(0.8) within group (order by revenue) from product_metrics) then 'Star'
            when revenue >= (select percentile_cont(0.5) within group (order by revenue) from product_metrics) then 'Performer'
            when revenue >= (select percentile_cont(0.2) within group (order by revenue) from product_metrics) then 'Average'
            else 'Underperformer'
        end as performance_tier

    from product_metrics
)

select * from ranked_products
