/*
description: Comprehensive customer metrics including RFM analysis, CLV predictions, and churn risk assessment. This is the primary fact table for customer analytics; one row per customer, customers who never ordered included.
tags: [customer]
columns:
  customer_id:
    description: Primary key
    checks:
      - unique
      - not_null
      - one_row_per: {to: stg_customers}
  email: {description: Cleaned email; NULL when invalid}
  first_name: {description: First name}
  last_name: {description: Last name}
  country: {description: Country code}
  customer_created_at: {description: Account creation date}
  recency_days: {description: Days since the last completed order (since sign-up without orders)}
  frequency: {description: Number of completed orders}
  monetary_value:
    description: Total historical revenue from customer
    checks: [not_null]
  avg_order_value: {description: Average completed order total}
  recency_score: {description: Recency score 1-5}
  frequency_score: {description: Frequency score 1-5}
  monetary_score: {description: Monetary score 1-5}
  rfm_total_score: {description: Sum of the RFM scores}
  rfm_segment_code: {description: RFM scores as a string}
  customer_tenure_days: {description: Days between first and last completed order}
  first_order_date: {description: First completed order date}
  last_order_date: {description: Last completed order date}
  current_clv: {description: Historical customer lifetime value (= monetary_value)}
  predicted_clv_12m:
    description: Predicted customer lifetime value for next 12 months
    checks: [not_null]
  churn_risk:
    description: Churn risk category (Very Low, Low, Medium, High)
    checks:
      - accepted_values: {values: ['Very Low', 'Low', 'Medium', 'High']}
  updated_at: {description: Timestamp of the run that built the row}
checks:
  - name: revenue_not_zero
    description: Customers bring some completed-order revenue; none at all means the order or line export came empty or every order lost its completed status.
    sql: |
      select count(*) as customers, coalesce(sum(monetary_value), 0) as revenue
      from marts.fct_customer_metrics
      having count(*) > 0 and coalesce(sum(monetary_value), 0) = 0
  - name: assert_positive_clv
    description: Predicted CLV is never negative (the seed's singular test).
    sql: select * from marts.fct_customer_metrics where predicted_clv_12m < 0
  - name: assert_rfm_scores_valid
    description: Recency, frequency and monetary scores are between 1 and 5 (the seed's singular test).
    sql: |
      select * from marts.fct_customer_metrics
      where recency_score not between 1 and 5
         or frequency_score not between 1 and 5
         or monetary_score not between 1 and 5
  - name: revenue_conserved
    description: Completed-order revenue is the same in int_customer_orders, summed over customers here, and in product revenue plus shipping, so no money is lost between tables.
    sql: |
      with totals as (
          select
              (select coalesce(sum(order_total), 0) from intermediate.int_customer_orders) as order_revenue,
              (select coalesce(sum(monetary_value), 0) from marts.fct_customer_metrics) as customer_revenue,
              (select coalesce(sum(revenue), 0) from intermediate.int_product_metrics)
                + (select coalesce(sum(shipping_cost), 0) from intermediate.int_customer_orders) as product_revenue_plus_shipping
      )
      select * from totals
      where order_revenue <> customer_revenue or order_revenue <> product_revenue_plus_shipping
*/
with customers as (
    select * from staging.stg_customers
),

rfm as (
    select * from intermediate.int_customer_rfm
)

select
    c.customer_id,
    c.email,
    c.first_name,
    c.last_name,
    c.country,
    c.customer_created_at,

    r.recency_days,
    r.frequency,
    r.monetary_value,
    r.avg_order_value,
    r.recency_score,
    r.frequency_score,
    r.monetary_score,
    r.rfm_total_score,
    r.rfm_segment_code,

    r.customer_tenure_days,
    r.first_order_date,
    r.last_order_date,

    r.monetary_value as current_clv,
    case
        when r.rfm_total_score >= 12 then r.monetary_value * 2.0
        when r.rfm_total_score >= 9 then r.monetary_value * 1.5
        when r.rfm_total_score >= 6 then r.monetary_value * 1.2
        else r.monetary_value * 0.8
    end as predicted_clv_12m,

    -- Customers who never ordered are judged by how long ago they signed up.
    case
        when r.frequency = 0 and r.recency_days > 180 then 'High'
        when r.frequency = 0 and r.recency_days > 90 then 'Medium'
        when r.frequency = 0 then 'Low'
        when r.recency_days > 180 and r.frequency = 1 then 'High'
        when r.recency_days > 120 then 'Medium'
        when r.recency_days > 90 then 'Low'
        else 'Very Low'
    end as churn_risk,

    getvariable('run_started_at') as updated_at
from customers as c
left join rfm as r on c.customer_id = r.customer_id
