/*
description: How customers, revenue and predicted 12-month CLV are spread over the RFM segments (tutorial question "what does our customer base look like?"). One row per segment, largest revenue first.
tags: [customer]
columns:
  customer_segment: {description: Business segment from dim_customer_segments}
  customer_count: {description: Customers in the segment}
  total_revenue: {description: "Sum of the customers' historical revenue (completed orders, shipping included)"}
  avg_customer_value: {description: "Average historical revenue per customer, rounded to cents"}
  avg_predicted_clv: {description: "Average predicted 12-month CLV per customer, rounded to cents"}
  total_predicted_value: {description: "Sum of the predicted 12-month CLV, rounded to cents"}
checks:
  - name: every_customer_counted
    description: The segment counts add up to the number of customers in dim_customer_segments.
    sql: |
      select *
      from (
          select
              (select count(*) from marts.dim_customer_segments) as customers,
              (select coalesce(sum(customer_count), 0) from analyses.segment_distribution) as counted
      )
      where customers <> counted
*/
with customer_segments as (
    select * from marts.dim_customer_segments
)

select
    customer_segment,
    count(*) as customer_count,
    sum(monetary_value) as total_revenue,
    -- avg() of decimals is a double: back to decimal before rounding, so a half cent rounds
    -- up like in the sums (308.895 -> 308.90, where the double 308.8949... would give 308.89).
    round(avg(monetary_value)::decimal(38, 4), 2) as avg_customer_value,
    round(avg(predicted_clv_12m)::decimal(38, 4), 2) as avg_predicted_clv,
    round(sum(predicted_clv_12m), 2) as total_predicted_value
from customer_segments
group by customer_segment
order by total_revenue desc, customer_segment
