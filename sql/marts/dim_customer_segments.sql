/*
description: Customer segmentation based on RFM analysis with recommended actions for marketing and retention campaigns.
tags: [customer, segmentation]
columns:
  customer_id:
    description: Primary key
    checks:
      - unique
      - not_null
      - one_row_per: {to: fct_customer_metrics}
  customer_segment:
    description: Business segment classification
    checks:
      - accepted_values:
          values: ['Champions', 'Loyal Customers', 'New Customers', 'Big Spenders', 'At Risk', 'Cant Lose Them', 'Hibernating', 'Lost', 'Others']
  total_orders: {description: Number of completed orders}
  recommended_action: {description: Suggested marketing action for the segment}
*/
with customer_metrics as (
    select * from marts.fct_customer_metrics
)

select
    customer_id,
    email,
    first_name,
    last_name,

    case
        -- Never ordered: new if they signed up within 90 days, otherwise a lost lead.
        when frequency = 0 and recency_score >= 3 then 'New Customers'
        when frequency = 0 then 'Lost'
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

    recency_score,
    frequency_score,
    monetary_score,
    rfm_total_score,

    monetary_value,
    frequency as total_orders,
    avg_order_value,
    predicted_clv_12m,
    churn_risk,
    recency_days,

    case
        when recency_score >= 4 and frequency_score >= 4 then 'VIP treatment, exclusive offers'
        when recency_score >= 4 and frequency_score <= 2 then 'Onboarding campaign, product recommendations'
        when recency_score <= 2 and monetary_score >= 3 then 'Win-back campaign, special discount'
        when recency_score <= 2 and frequency_score <= 2 then 'Re-engagement or sunset'
        else 'Standard nurture campaign'
    end as recommended_action
from customer_metrics
