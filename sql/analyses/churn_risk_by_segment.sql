/*
description: Churn risk inside each segment (tutorial question "which segments are slipping away?"). One row per segment and churn risk with the customers' average value and days since their last order.
tags: [customer, churn]
columns:
  customer_segment: {description: Business segment from dim_customer_segments}
  churn_risk: {description: Churn risk category}
  customer_count: {description: Customers in the segment with this churn risk}
  avg_value: {description: "Average historical revenue per customer, rounded to cents"}
  avg_recency: {description: "Average days since the last completed order (since sign-up without orders), one decimal"}
*/
with customer_segments as (
    select * from marts.dim_customer_segments
)

select
    customer_segment,
    churn_risk,
    count(*) as customer_count,
    -- avg() of decimals is a double: back to decimal before rounding, so a half cent rounds
    -- up like in the sums (308.895 -> 308.90, where the double 308.8949... would give 308.89).
    round(avg(monetary_value)::decimal(38, 4), 2) as avg_value,
    round(avg(recency_days), 1) as avg_recency
from customer_segments
group by customer_segment, churn_risk
order by
    customer_segment,
    case churn_risk when 'High' then 1 when 'Medium' then 2 when 'Low' then 3 when 'Very Low' then 4 else 5 end
