/*
description: The ML feature table as handed to data science - a view on ml.ml_customer_features in customer order. Its materialization writes the view to exports/ml_customer_features.parquet, so the export runs (and can be re-run or fail) on its own, after the feature table and its checks.
materialized: view
tags: [export]
export: {file: ml_customer_features.parquet, order_by: customer_id}
columns:
  customer_id: {description: Unique customer identifier}
*/
with customer_features as (
    select * from ml.ml_customer_features
)

select *
from customer_features
order by customer_id
