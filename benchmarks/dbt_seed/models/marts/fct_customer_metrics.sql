{{ config(
    materialized='table',
    tags=['marts', 'customer']
) }}

with customers as (
    select * from {{ ref('stg_customers') }}
),

rfm as (
    select * from {{ ref('int_customer_rfm') }}
),

customer_profile as (
    select
        c.customer_id,
        c.email,
        c.first_name,
        c.last_name,
        c.country,
        c.customer_created_at,

        -- RFM Metrics
        r.recency_days,
        r.frequency,
        r.monetary_value,
        r.avg_order_value,
        r.recency_score,
        r.frequency_score,
        r.monetary_score,
        r.rfm_total_score,
        r.rfm_segment_code,

        -- Tenure
        r.customer_tenure_days,
        r.first_order_date,
        r.last_order_date,

        -- Customer Lifetime Value (simplified)
        r.monetary_value as current_clv,

        -- Predicted future value (simple heuristic)
        case
            when r.rfm_total_score >= 12 then r.monetary_value * 2.0
            when r.rfm_total_score >= 9 then r.monetary_value * 1.5
            when r.rfm_total_score >= 6 then r.monetary_value * 1.2
            else r.monetary_value * 0.8
        end as predicted_clv_12m,

        -- Churn risk
        case
            when r.recency_days > 180 and r.frequency = 1 then 'High'
            when r.recency_days > 120 then 'Medium'
            when r.recency_days > 90 then 'Low'
            else 'Very Low'
        end as churn_risk,

        current_timestamp as dbt_updated_at

    from customers c
    left join rfm r on c.customer_id = r.customer_id
)

select * from customer_profile
