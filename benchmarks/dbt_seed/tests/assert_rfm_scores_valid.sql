-- Test that RFM scores are in valid range (1-5)
select *
from {{ ref('fct_customer_metrics') }}
where recency_score not between 1 and 5
   or frequency_score not between 1 and 5
   or monetary_score not between 1 and 5
