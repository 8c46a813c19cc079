/*
description: Customers on the RFM recency x frequency grid (tutorial question "where do our customers sit on the RFM map?") - one row per occupied (recency_score, frequency_score) cell with the customer count and average value. The materialization draws it as a heatmap.
tags: [customer]
columns:
  recency_score: {description: Recency score 1-5 (5 = ordered within 30 days)}
  frequency_score: {description: Frequency score 1-5 (5 = five or more orders)}
  customer_count: {description: Customers in the cell}
  avg_value: {description: "Average historical revenue per customer in the cell, rounded to cents"}
*/
with customer_metrics as (
    select * from marts.fct_customer_metrics
)

select
    recency_score,
    frequency_score,
    count(*) as customer_count,
    -- avg() of decimals is a double: back to decimal before rounding, so a half cent rounds
    -- up like in the sums (308.895 -> 308.90, where the double 308.8949... would give 308.89).
    round(avg(monetary_value)::decimal(38, 4), 2) as avg_value
from customer_metrics
group by recency_score, frequency_score
order by recency_score desc, frequency_score desc
