{{ config(
    materialized='table',
    tags=['intermediate', 'customer', 'rfm']
) }}

-- RFM Analysis: Recency, Frequency, Monetary
with customer_orders as (
    select * from {{ ref('int_customer_orders') }}
),

analysis_date as (
    select max(order_date) as max_date
    from customer_orders
),

rfm_calc as (
    select
        co.customer_id,

        -- Recency: days since last purchase
        datediff('day', max(co.order_date), ad.max_date) as recency_days,

        -- Frequency: total number of orders
        count(distinct co.order_id) as frequency,

        -- Monetary: total revenue
        sum(co.order_total) as monetary_value,

        -- Additional metrics
        avg(co.order_total) as avg_order_value,
        min(co.order_date) as first_order_date,
        max(co.order_date) as last_order_date,
        datediff('day', min(co.order_date), max(co.order_date)) as customer_tenure_days

    from customer_orders co
    cross join analysis_date ad
    group by 1, ad.max_date
),

rfm_scores as (
    select
        *,

        -- RFM Scoring (1-5, where 5 is best)
        case
            when recency_days <= 30 then 5
            when recency_days <= 60 then 4
            when recency_days <= 90 then 3
            when recency_days <= 180 then 2
            else 1
        end as recency_score,

        case
            when frequency >= 5 then 5
            when frequency >= 4 then 4
            when frequency >= 3 then 3
            when frequency >= 2 then 2
            else 1
        end as frequency_score,

        case
            when monetary_value >= 500 then 5
            when monetary_value >= 300 then 4
            when monetary_value >= 200 then 3
            when monetary_value >= 100 then 2
            else 1
        end as monetary_score

    from rfm_calc
)

select
    *,
    (recency_score + frequency_score + monetary_score) as rfm_total_score,
    concat(recency_score, frequency_score, monetary_score) as rfm_segment_code
from rfm_scores
