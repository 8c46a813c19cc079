-- Test that predicted CLV is always positive
select *
from {{ ref('fct_customer_metrics') }}
where predicted_clv_12m < 0
