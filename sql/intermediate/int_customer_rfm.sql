/*
description: Recency, frequency and monetary value with their 1-5 scores, one row per customer, as of the run's analysis date. Customers without a completed order get frequency 0, monetary value 0 and a recency counted from their sign-up.
tags: [customer, rfm]
columns:
  customer_id:
    description: Primary key
    checks: [unique, not_null]
  recency_days: {description: "Days from the last completed order (or sign-up, for customers who never ordered) to the analysis date"}
  frequency: {description: Number of completed orders}
  monetary_value: {description: "Total revenue of completed orders, shipping included"}
  avg_order_value: {description: Average completed order total (0 without orders)}
  first_order_date: {description: First completed order date}
  last_order_date: {description: Last completed order date}
  customer_tenure_days: {description: Days between first and last completed order}
  recency_score: {description: 5 = ordered within 30 days ... 1 = more than 180 days ago}
  frequency_score: {description: 1-5 from the number of orders}
  monetary_score: {description: 1-5 from the monetary value}
  rfm_total_score: {description: Sum of the three scores (3-15)}
  rfm_segment_code: {description: "The three scores as a string, e.g. '533'"}
  analysis_date: {description: The run's analysis date the recency is measured to}
checks:
  - name: analysis_date_not_before_latest_order
    description: The analysis date is not earlier than the latest completed order, so no recency is negative.
    sql: |
      select * from intermediate.int_customer_rfm
      where analysis_date < last_order_date
*/
with customers as (
    select * from staging.stg_customers
),

-- The totals are maintained per customer (int_customer_order_stats); only what depends on the
-- analysis date is computed here, on every run.
order_stats as (
    select
        customer_id,
        orders_count as frequency,
        order_total_sum as monetary_value,
        order_total_sum / orders_count as avg_order_value,
        first_order_date,
        last_order_date
    from intermediate.int_customer_order_stats
),

rfm_calc as (
    select
        c.customer_id,
        datediff(
            'day',
            coalesce(s.last_order_date, c.customer_created_at),
            getvariable('analysis_date')
        ) as recency_days,
        coalesce(s.frequency, 0) as frequency,
        coalesce(s.monetary_value, 0) as monetary_value,
        coalesce(s.avg_order_value, 0) as avg_order_value,
        s.first_order_date,
        s.last_order_date,
        coalesce(datediff('day', s.first_order_date, s.last_order_date), 0) as customer_tenure_days
    from customers as c
    left join order_stats as s on c.customer_id = s.customer_id
),

rfm_scores as (
    select
        *,
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
    customer_id,
    recency_days,
    frequency,
    monetary_value,
    avg_order_value,
    first_order_date,
    last_order_date,
    customer_tenure_days,
    recency_score,
    frequency_score,
    monetary_score,
    recency_score + frequency_score + monetary_score as rfm_total_score,
    concat(recency_score, frequency_score, monetary_score) as rfm_segment_code,
    getvariable('analysis_date') as analysis_date
from rfm_scores
