/*
description: Win-back campaign list (tutorial Module 8.1) - valuable customers who are drifting away - At Risk or Cant Lose Them, High or Medium churn risk, more than 200 spent. Highest value first. The materialization exports the rows with an email to exports/winback_targets.csv.
tags: [customer, churn, campaign]
export: {file: winback_targets.csv, where: email is not null, order_by: "monetary_value desc, customer_id"}
columns:
  customer_id: {description: Customer to win back}
  email: {description: Cleaned email; NULL when invalid (such rows are left out of the CSV export)}
  first_name: {description: First name}
  last_name: {description: Last name}
  customer_segment: {description: At Risk or Cant Lose Them}
  monetary_value: {description: Total historical revenue}
  recency_days: {description: Days since the last completed order}
  churn_risk: {description: High or Medium}
  recommended_action: {description: Suggested marketing action}
*/
with customer_segments as (
    select * from marts.dim_customer_segments
)

select
    customer_id,
    email,
    first_name,
    last_name,
    customer_segment,
    monetary_value,
    recency_days,
    churn_risk,
    recommended_action
from customer_segments
where churn_risk in ('High', 'Medium')
  and monetary_value > 200
  and customer_segment in ('At Risk', 'Cant Lose Them')
order by monetary_value desc, customer_id
