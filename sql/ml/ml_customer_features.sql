/*
description: Feature engineering for customer churn prediction and CLV modeling. This table contains normalized and engineered features ready for ML models; one row per customer, as of the run's analysis date.
tags: [features]
columns:
  customer_id:
    description: Unique customer identifier
    checks:
      - unique
      - not_null
      - one_row_per: {to: fct_customer_metrics}
  is_churn_risk: {description: "Target variable - 1 if customer is at medium/high churn risk, 0 otherwise"}
  country: {description: Country code}
  account_age_days: {description: Days from account creation to the analysis date}
  recency_days: {description: Days since last purchase (lower is better)}
  frequency: {description: Total number of orders}
  monetary_value: {description: Total revenue from customer}
  avg_order_value: {description: Average order total}
  recency_score: {description: Recency score 1-5}
  frequency_score: {description: Frequency score 1-5}
  monetary_score: {description: Monetary score 1-5}
  rfm_total_score: {description: Sum of the RFM scores}
  customer_tenure_days: {description: Days between first and last order}
  revenue_per_order: {description: monetary_value / frequency (0 without orders)}
  orders_per_month: {description: Orders per 30 days of tenure (0 when tenure is 0)}
  order_value_volatility: {description: Sample standard deviation of order totals (NULL under 2 orders)}
  max_order_value: {description: Largest order total}
  min_order_value: {description: Smallest order total}
  avg_days_between_orders: {description: Mean gap between consecutive orders (NULL under 2 orders)}
  order_trend_ratio: {description: Ratio of recent orders (last 90d) vs previous period (shows growth/decline); NULL under 3 orders or with no order in the previous period}
  is_active_last_30d: {description: 1 when the last order is at most 30 days old (0 without orders)}
  is_active_last_90d: {description: 1 when the last order is at most 90 days old (0 without orders)}
  predicted_clv_12m: {description: Predicted customer lifetime value for next 12 months}
  clv_growth_multiplier: {description: predicted_clv_12m / monetary_value (0 without revenue)}
  analysis_date: {description: The date the features are measured at}
  feature_generated_at: {description: Timestamp of the run that built the row}
checks:
  - name: no_nan_or_inf
    description: No feature is NaN or infinite (every division is guarded).
    sql: |
      select * from ml.ml_customer_features
      where isnan(orders_per_month) or isinf(orders_per_month)
         or isnan(order_trend_ratio) or isinf(order_trend_ratio)
         or isnan(clv_growth_multiplier) or isinf(clv_growth_multiplier)
         or isnan(revenue_per_order) or isinf(revenue_per_order)
*/
with customer_metrics as (
    select * from marts.fct_customer_metrics
),

customer_stats as (
    select * from intermediate.int_customer_order_stats
),

-- Only the last 180 days of orders move the trend; the rest comes from the maintained totals.
recent_orders as (
    select
        customer_id,
        count(*) filter (where order_date >= getvariable('analysis_date') - 90) as last_90d,
        count(*) filter (where order_date < getvariable('analysis_date') - 90) as previous_90d
    from intermediate.int_customer_orders
    where order_date >= getvariable('analysis_date') - 180
    group by customer_id
),

-- In doubles: a sum of squared order totals overflows any decimal for legal totals (up to 10^27),
-- and a double sum in a maintained table would differ from its full rebuild in the last bit.
order_volatility as (
    select customer_id, stddev_samp(order_total::double) as order_value_volatility
    from intermediate.int_customer_orders
    group by customer_id
),

-- The gaps between consecutive orders add up to last - first, so their average is
-- (last - first) / (orders - 1), exactly what averaging each gap gives.
customer_behavior as (
    select
        s.customer_id,
        v.order_value_volatility,
        s.max_order_total as max_order_value,
        s.min_order_total as min_order_value,
        datediff('day', s.first_order_date, s.last_order_date) / nullif(s.orders_count - 1, 0) as avg_days_between_orders,
        case
            when s.orders_count >= 3 then
                coalesce(r.last_90d, 0)::double / nullif(coalesce(r.previous_90d, 0), 0)::double
        end as order_trend_ratio
    from customer_stats as s
    left join recent_orders as r on s.customer_id = r.customer_id
    left join order_volatility as v on s.customer_id = v.customer_id
)

select
    cm.customer_id,
    case when cm.churn_risk in ('High', 'Medium') then 1 else 0 end as is_churn_risk,
    cm.country,
    datediff('day', cm.customer_created_at, getvariable('analysis_date')) as account_age_days,

    cm.recency_days,
    cm.frequency,
    cm.monetary_value,
    cm.avg_order_value,
    cm.recency_score,
    cm.frequency_score,
    cm.monetary_score,
    cm.rfm_total_score,

    cm.customer_tenure_days,
    case when cm.frequency > 0 then cm.monetary_value / cm.frequency else 0 end as revenue_per_order,
    case
        when cm.customer_tenure_days > 0 then cm.frequency::double / cm.customer_tenure_days * 30
        else 0
    end as orders_per_month,

    cb.order_value_volatility,
    cb.max_order_value,
    cb.min_order_value,
    cb.avg_days_between_orders,
    cb.order_trend_ratio,

    case when cm.frequency > 0 and cm.recency_days <= 30 then 1 else 0 end as is_active_last_30d,
    case when cm.frequency > 0 and cm.recency_days <= 90 then 1 else 0 end as is_active_last_90d,

    cm.predicted_clv_12m,
    case when cm.monetary_value > 0 then cm.predicted_clv_12m / cm.monetary_value else 0 end as clv_growth_multiplier,

    getvariable('analysis_date') as analysis_date,
    getvariable('run_started_at') as feature_generated_at
from customer_metrics as cm
left join customer_behavior as cb on cm.customer_id = cb.customer_id
