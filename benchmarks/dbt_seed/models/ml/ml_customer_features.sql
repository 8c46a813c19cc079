{{ config(
    materialized='table',
    tags=['ml', 'features']
) }}

with customer_metrics as (
    select * from {{ ref('fct_customer_metrics') }}
),

customer_orders as (
    select * from {{ ref('int_customer_orders') }}
),

-- DuckDB change: the seed's lag() inside avg() is computed here first
customer_orders_with_previous as (
    select
        *,
        lag(order_date) over (partition by customer_id order by order_date) as previous_order_date
    from customer_orders
),

-- Behavioral features
customer_behavior as (
    select
        customer_id,

        -- Order patterns
        stddev(order_total) as order_value_volatility,
        max(order_total) as max_order_value,
        min(order_total) as min_order_value,

        -- Time-based patterns
        avg(datediff('day',
            previous_order_date,
            order_date
        )) as avg_days_between_orders,

        -- Trend
        case
            when count(*) >= 3 then
                (sum(case when order_date >= current_date - 90 then 1 else 0 end)::double /
                 nullif(sum(case when order_date >= current_date - 180
                          and order_date < current_date - 90 then 1 else 0 end)::double, 0))
            else null
        end as order_trend_ratio

    from customer_orders_with_previous
    group by 1
),

-- Final feature set for ML
ml_features as (
    select
        cm.customer_id,

        -- Target variable (for supervised learning)
        case when cm.churn_risk in ('High', 'Medium') then 1 else 0 end as is_churn_risk,

        -- Demographic features
        cm.country,
        datediff('day', cm.customer_created_at, current_date) as account_age_days,

        -- RFM features
        cm.recency_days,
        cm.frequency,
        cm.monetary_value,
        cm.avg_order_value,
        cm.recency_score,
        cm.frequency_score,
        cm.monetary_score,
        cm.rfm_total_score,

        -- Derived features
        cm.customer_tenure_days,
        case when cm.frequency > 0 then cm.monetary_value / cm.frequency else 0 end as revenue_per_order,
        case when cm.customer_tenure_days > 0 then cm.frequency::double / cm.customer_tenure_days * 30 else 0 end as orders_per_month,

        -- Behavioral features
        cb.order_value_volatility,
        cb.max_order_value,
        cb.min_order_value,
        cb.avg_days_between_orders,
        cb.order_trend_ratio,

        -- Engagement features
        case when cm.recency_days <= 30 then 1 else 0 end as is_active_last_30d,
        case when cm.recency_days <= 90 then 1 else 0 end as is_active_last_90d,

        -- Value features
        cm.predicted_clv_12m,
        case when cm.monetary_value > 0 then cm.predicted_clv_12m / cm.monetary_value else 0 end as clv_growth_multiplier,

        current_timestamp as feature_generated_at

    from customer_metrics cm
    left join customer_behavior cb on cm.customer_id = cb.customer_id
)

select * from ml_features
