/*
description: fct_customer_metrics maintained incrementally (the seed's Module 7.3). Each run upserts on customer_id only the customers whose metrics changed (new customers, new or changed orders, a changed profile, or a moved analysis date) and deletes customers that disappeared; updated_at is when a customer's row last changed. Run config full_refresh rebuilds it.
materialized: incremental
unique_key: customer_id
tags: [customer, incremental]
columns:
  customer_id:
    description: Primary key
    checks: [unique, not_null]
  row_hash: {description: Hash of the row's values; a changed hash means the customer is rewritten}
  updated_at: {description: Run that last changed this customer's row}
checks:
  - name: equals_full_rebuild
    description: Every row equals fct_customer_metrics, the full rebuild, so incremental merging never drifts.
    sql: |
      with incremental as (select * exclude (row_hash, updated_at) from marts.fct_customer_metrics_incremental),
      rebuilt as (select * exclude (updated_at) from marts.fct_customer_metrics)
      (select 'missing or different here' as problem, * from (from rebuilt except all from incremental))
      union all
      (select 'extra or different here' as problem, * from (from incremental except all from rebuilt))
*/
-- The seed filtered on customer_created_at >= max(...), which never revisits existing customers
-- who placed new orders. Comparing each row's hash with the stored one catches every change.
select * exclude (updated_at)
from marts.fct_customer_metrics
