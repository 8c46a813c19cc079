{{ config(
    materialized='table',
    tags=['marts', 'customer', 'segmentation']
) }}

with customer_metrics as (
    select * from {{ ref('fct_customer_metrics') }}
),

segmentation as (
    select
        customer_id,
        email,
        first_name,
        last_name,

        -- Segment based on RFM scores
        case
            when recency_score >= 4 and frequency_score >= 4 and monetary_score >= 4 then 'Champions'
            when recency_score >= 3 and frequency_score >= 3 and monetary_score >= 3 then 'Loyal Customers'
            when recency_score >= 4 and frequency_score <= 2 and monetary_score <= 2 then 'New Customers'
            when recency_score >= 3 and frequency_score <= 2 and monetary_score >= 3 then 'Big Spenders'
            when recency_score <= 2 and frequency_score >= 3 and monetary_score >= 3 then 'At Risk'
            when recency_score <= 2 and frequency_score <= 2 and monetary_score >= 3 then 'Cant Lose Them'
            when recency_score <= 2 and frequency_score >= 2 and monetary_score <= 2 then 'Hibernating'
            when recency_score <= 1 and frequency_score <= 1 and monetary_score <= 1 then 'Lost'
            else 'Others'
        end as customer_segment,

        -- Segment characteristics
        recency_score,
        frequency_score,
        monetary_score,
        rfm_total_score,

        -- Business metrics
        monetary_value,
        frequency as total_orders,
        avg_order_value,
        predicted_clv_12m,
        churn_risk,

        -- Recommended actions
        case
            when recency_score >= 4 and frequency_score >= 4 then 'VIP treatment, exclusive offers'
            when recency_score >= 4 and frequency_score <= 2 then 'Onboarding campaign, product recommendations'
            when recency_score <= 2 and monetary_score >= 3 then 'Win-back campaign, special discount'
            when recency_score <= 2 and frequency_score <= 2 then 'Re-engagement or sunset'
            else 'Standard nurture campaign'
        end as recommended_action

    from customer_metrics
)

select * from segmentation
