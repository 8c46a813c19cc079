/*
description: Marketing budget per segment (tutorial Module 8.2) - 10% of the segment's predicted 12-month value, and what that leaves per customer. Largest budget first.
tags: [customer, campaign]
columns:
  customer_segment: {description: Business segment from dim_customer_segments}
  customer_count: {description: Customers in the segment}
  total_predicted_value: {description: "Sum of the predicted 12-month CLV, rounded to cents"}
  avg_predicted_clv: {description: "Average predicted 12-month CLV, rounded to cents"}
  suggested_marketing_budget: {description: "10% of the segment's predicted 12-month CLV, rounded to cents"}
  budget_per_customer: {description: "suggested_marketing_budget / customer_count, rounded to cents (NULL for an empty segment)"}
checks:
  - name: budget_not_negative
    description: No segment gets a negative budget.
    sql: select * from analyses.marketing_budget_allocation where suggested_marketing_budget < 0
*/
with customer_segments as (
    select * from marts.dim_customer_segments
),

-- avg() and division of decimals give doubles: back to decimal before rounding, so a half
-- cent rounds up like in the sums (308.895 -> 308.90, where the double 308.8949... gives 308.89).
segment_value as (
    select
        customer_segment,
        count(*) as customer_count,
        sum(predicted_clv_12m) as total_predicted_value,
        avg(predicted_clv_12m)::decimal(38, 4) as avg_predicted_clv
    from customer_segments
    group by customer_segment
)

select
    customer_segment,
    customer_count,
    round(total_predicted_value, 2) as total_predicted_value,
    round(avg_predicted_clv, 2) as avg_predicted_clv,
    round(total_predicted_value * 0.10, 2) as suggested_marketing_budget,
    round((total_predicted_value * 0.10 / nullif(customer_count, 0))::decimal(38, 4), 2) as budget_per_customer
from segment_value
order by suggested_marketing_budget desc, customer_segment
