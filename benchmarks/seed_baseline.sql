-- The seed's dbt project (dbt_ecommerce_tutorial.md) as plain DuckDB statements, in the order
-- `dbt seed` + `dbt run` + `dbt test` would run them, each test right after the model it tests.
-- refs are replaced by <schema>.<name>; materializations follow dbt_project.yml and the config
-- blocks (staging: view, everything else: table); schema tests are written as dbt compiles them.
-- The only changes to the seed's SQL, so that it runs on DuckDB 2.0 with the same meaning:
--   * initcap: DuckDB has none; seed_baseline.py first runs the project's own macro
--     (sql/macros/initcap.sql), which has PostgreSQL's semantics;
--   * ml_customer_features: lag() moved out of avg() into a CTE (window inside aggregate),
--     dateadd('day', -n, current_date) written as current_date - n, nullif(..., 0) around the
--     denominator of order_trend_ratio, ::float written as ::double.
-- {data_dir} is filled in by seed_baseline.py. A statement follows each "-- name:" line.

-- name: raw_customers kind: load
create or replace table raw.raw_customers as select * from read_csv('{data_dir}/raw_customers.csv');

-- name: raw_orders kind: load
create or replace table raw.raw_orders as select * from read_csv('{data_dir}/raw_orders.csv');

-- name: raw_order_items kind: load
create or replace table raw.raw_order_items as select * from read_csv('{data_dir}/raw_order_items.csv');

-- name: raw_products kind: load
create or replace table raw.raw_products as select * from read_csv('{data_dir}/raw_products.csv');

-- name: stg_customers kind: model
create or replace view staging.stg_customers as
with source as (
    select * from raw.raw_customers
),

cleaned as (
    select
        customer_id,
        lower(trim(email)) as email,
        initcap(trim(first_name)) as first_name,
        initcap(trim(last_name)) as last_name,
        upper(trim(country)) as country,
        cast(created_at as date) as customer_created_at,

        -- Data quality flags
        case
            when email is null or email = '' then false
            when email not like '%@%' then false
            else true
        end as is_valid_email,

        current_timestamp as dbt_loaded_at

    from source
)

select * from cleaned
where is_valid_email = true;

-- name: unique_stg_customers_customer_id kind: test
select customer_id as unique_field, count(*) as n_records
from staging.stg_customers
where customer_id is not null
group by customer_id
having count(*) > 1;

-- name: not_null_stg_customers_customer_id kind: test
select customer_id from staging.stg_customers where customer_id is null;

-- name: not_null_stg_customers_email kind: test
select email from staging.stg_customers where email is null;

-- name: stg_orders kind: model
create or replace view staging.stg_orders as
with source as (
    select * from raw.raw_orders
),

cleaned as (
    select
        order_id,
        customer_id,
        cast(order_date as date) as order_date,
        lower(trim(status)) as order_status,
        cast(shipping_cost as decimal(10,2)) as shipping_cost,

        -- Derived fields
        extract(year from cast(order_date as date)) as order_year,
        extract(month from cast(order_date as date)) as order_month,
        extract(quarter from cast(order_date as date)) as order_quarter,
        dayname(cast(order_date as date)) as order_day_of_week,

        -- Data quality flags
        case when status = 'completed' then true else false end as is_completed,

        current_timestamp as dbt_loaded_at

    from source
)

select * from cleaned;

-- name: unique_stg_orders_order_id kind: test
select order_id as unique_field, count(*) as n_records
from staging.stg_orders
where order_id is not null
group by order_id
having count(*) > 1;

-- name: not_null_stg_orders_order_id kind: test
select order_id from staging.stg_orders where order_id is null;

-- name: not_null_stg_orders_customer_id kind: test
select customer_id from staging.stg_orders where customer_id is null;

-- name: relationships_stg_orders_customer_id kind: test
with child as (
    select customer_id as from_field from staging.stg_orders where customer_id is not null
),
parent as (
    select customer_id as to_field from staging.stg_customers
)
select from_field
from child
left join parent on child.from_field = parent.to_field
where parent.to_field is null;

-- name: stg_order_items kind: model
create or replace view staging.stg_order_items as
with source as (
    select * from raw.raw_order_items
),

cleaned as (
    select
        order_item_id,
        order_id,
        product_id,
        cast(quantity as integer) as quantity,
        cast(unit_price as decimal(10,2)) as unit_price,
        cast(quantity * unit_price as decimal(10,2)) as line_total,

        current_timestamp as dbt_loaded_at

    from source
    where quantity > 0  -- Data quality filter
)

select * from cleaned;

-- name: unique_stg_order_items_order_item_id kind: test
select order_item_id as unique_field, count(*) as n_records
from staging.stg_order_items
where order_item_id is not null
group by order_item_id
having count(*) > 1;

-- name: not_null_stg_order_items_order_item_id kind: test
select order_item_id from staging.stg_order_items where order_item_id is null;

-- name: not_null_stg_order_items_order_id kind: test
select order_id from staging.stg_order_items where order_id is null;

-- name: relationships_stg_order_items_order_id kind: test
with child as (
    select order_id as from_field from staging.stg_order_items where order_id is not null
),
parent as (
    select order_id as to_field from staging.stg_orders
)
select from_field
from child
left join parent on child.from_field = parent.to_field
where parent.to_field is null;

-- name: stg_products kind: model
create or replace view staging.stg_products as
with source as (
    select * from raw.raw_products
),

cleaned as (
    select
        product_id,
        trim(product_name) as product_name,
        initcap(trim(category)) as category,
        cast(cost_price as decimal(10,2)) as cost_price,
        cast(list_price as decimal(10,2)) as list_price,
        cast(list_price - cost_price as decimal(10,2)) as profit_margin,
        cast((list_price - cost_price) / list_price * 100 as decimal(5,2)) as profit_margin_pct,

        current_timestamp as dbt_loaded_at

    from source
)

select * from cleaned;

-- name: unique_stg_products_product_id kind: test
select product_id as unique_field, count(*) as n_records
from staging.stg_products
where product_id is not null
group by product_id
having count(*) > 1;

-- name: not_null_stg_products_product_id kind: test
select product_id from staging.stg_products where product_id is null;

-- name: int_customer_orders kind: model
create or replace table intermediate.int_customer_orders as
with orders as (
    select * from staging.stg_orders
    where is_completed = true
),

order_items as (
    select * from staging.stg_order_items
),

order_totals as (
    select
        o.order_id,
        o.customer_id,
        o.order_date,
        o.shipping_cost,
        sum(oi.line_total) as order_subtotal,
        sum(oi.line_total) + o.shipping_cost as order_total,
        count(oi.order_item_id) as items_count
    from orders o
    left join order_items oi on o.order_id = oi.order_id
    group by 1, 2, 3, 4
)

select * from order_totals;

-- name: int_customer_rfm kind: model
create or replace table intermediate.int_customer_rfm as
-- RFM Analysis: Recency, Frequency, Monetary
with customer_orders as (
    select * from intermediate.int_customer_orders
),

analysis_date as (
    select max(order_date) as max_date
    from customer_orders
),

rfm_calc as (
    select
        co.customer_id,

        -- Recency: days since last purchase
        datediff('day', max(co.order_date), ad.max_date) as recency_days,

        -- Frequency: total number of orders
        count(distinct co.order_id) as frequency,

        -- Monetary: total revenue
        sum(co.order_total) as monetary_value,

        -- Additional metrics
        avg(co.order_total) as avg_order_value,
        min(co.order_date) as first_order_date,
        max(co.order_date) as last_order_date,
        datediff('day', min(co.order_date), max(co.order_date)) as customer_tenure_days

    from customer_orders co
    cross join analysis_date ad
    group by 1, ad.max_date
),

rfm_scores as (
    select
        *,

        -- RFM Scoring (1-5, where 5 is best)
        case
            when recency_days <= 30 then 5
            when recency_days <= 60 then 4
            when recency_days <= 90 then 3
            when recency_days <= 180 then 2
            else 1
        end as recency_score,

        case
            when frequency >= 5 then 5
            when frequency >= 4 then 4
            when frequency >= 3 then 3
            when frequency >= 2 then 2
            else 1
        end as frequency_score,

        case
            when monetary_value >= 500 then 5
            when monetary_value >= 300 then 4
            when monetary_value >= 200 then 3
            when monetary_value >= 100 then 2
            else 1
        end as monetary_score

    from rfm_calc
)

select
    *,
    (recency_score + frequency_score + monetary_score) as rfm_total_score,
    concat(recency_score, frequency_score, monetary_score) as rfm_segment_code
from rfm_scores;

-- name: int_product_metrics kind: model
create or replace table intermediate.int_product_metrics as
with order_items as (
    select * from staging.stg_order_items
),

orders as (
    select * from staging.stg_orders
    where is_completed = true
),

products as (
    select * from staging.stg_products
),

product_sales as (
    select
        oi.product_id,
        count(distinct o.order_id) as orders_count,
        count(distinct o.customer_id) as customers_count,
        sum(oi.quantity) as units_sold,
        sum(oi.line_total) as revenue,
        avg(oi.unit_price) as avg_selling_price,
        min(o.order_date) as first_sale_date,
        max(o.order_date) as last_sale_date

    from order_items oi
    inner join orders o on oi.order_id = o.order_id
    group by 1
)

select
    p.product_id,
    p.product_name,
    p.category,
    p.cost_price,
    p.list_price,
    p.profit_margin,
    p.profit_margin_pct,

    coalesce(ps.orders_count, 0) as orders_count,
    coalesce(ps.customers_count, 0) as customers_count,
    coalesce(ps.units_sold, 0) as units_sold,
    coalesce(ps.revenue, 0) as revenue,
    coalesce(ps.avg_selling_price, 0) as avg_selling_price,
    coalesce(ps.revenue - (ps.units_sold * p.cost_price), 0) as total_profit,
    ps.first_sale_date,
    ps.last_sale_date

from products p
left join product_sales ps on p.product_id = ps.product_id;

-- name: fct_customer_metrics kind: model
create or replace table marts.fct_customer_metrics as
with customers as (
    select * from staging.stg_customers
),

rfm as (
    select * from intermediate.int_customer_rfm
),

customer_profile as (
    select
        c.customer_id,
        c.email,
        c.first_name,
        c.last_name,
        c.country,
        c.customer_created_at,

        -- RFM Metrics
        r.recency_days,
        r.frequency,
        r.monetary_value,
        r.avg_order_value,
        r.recency_score,
        r.frequency_score,
        r.monetary_score,
        r.rfm_total_score,
        r.rfm_segment_code,

        -- Tenure
        r.customer_tenure_days,
        r.first_order_date,
        r.last_order_date,

        -- Customer Lifetime Value (simplified)
        r.monetary_value as current_clv,

        -- Predicted future value (simple heuristic)
        case
            when r.rfm_total_score >= 12 then r.monetary_value * 2.0
            when r.rfm_total_score >= 9 then r.monetary_value * 1.5
            when r.rfm_total_score >= 6 then r.monetary_value * 1.2
            else r.monetary_value * 0.8
        end as predicted_clv_12m,

        -- Churn risk
        case
            when r.recency_days > 180 and r.frequency = 1 then 'High'
            when r.recency_days > 120 then 'Medium'
            when r.recency_days > 90 then 'Low'
            else 'Very Low'
        end as churn_risk,

        current_timestamp as dbt_updated_at

    from customers c
    left join rfm r on c.customer_id = r.customer_id
)

select * from customer_profile;

-- name: assert_positive_clv kind: test
-- Test that predicted CLV is always positive
select *
from marts.fct_customer_metrics
where predicted_clv_12m < 0;

-- name: assert_rfm_scores_valid kind: test
-- Test that RFM scores are in valid range (1-5)
select *
from marts.fct_customer_metrics
where recency_score not between 1 and 5
   or frequency_score not between 1 and 5
   or monetary_score not between 1 and 5;

-- name: unique_fct_customer_metrics_customer_id kind: test
select customer_id as unique_field, count(*) as n_records
from marts.fct_customer_metrics
where customer_id is not null
group by customer_id
having count(*) > 1;

-- name: not_null_fct_customer_metrics_customer_id kind: test
select customer_id from marts.fct_customer_metrics where customer_id is null;

-- name: not_null_fct_customer_metrics_monetary_value kind: test
select monetary_value from marts.fct_customer_metrics where monetary_value is null;

-- name: not_null_fct_customer_metrics_predicted_clv_12m kind: test
select predicted_clv_12m from marts.fct_customer_metrics where predicted_clv_12m is null;

-- name: accepted_values_fct_customer_metrics_churn_risk kind: test
with all_values as (
    select churn_risk as value_field, count(*) as n_records
    from marts.fct_customer_metrics
    group by churn_risk
)
select * from all_values
where value_field not in ('Very Low', 'Low', 'Medium', 'High');

-- name: dim_customer_segments kind: model
create or replace table marts.dim_customer_segments as
with customer_metrics as (
    select * from marts.fct_customer_metrics
),

segmentation as (
    select
        customer_id,
        email,
        first_name,
        last_name,

        -- Segment based on RFM scores
        case
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

        -- Segment characteristics
        recency_score,
        frequency_score,
        monetary_score,
        rfm_total_score,

        -- Business metrics
        monetary_value,
        frequency as total_orders,
        avg_order_value,
        predicted_clv_12m,
        churn_risk,

        -- Recommended actions
        case
            when recency_score >= 4 and frequency_score >= 4 then 'VIP treatment, exclusive offers'
            when recency_score >= 4 and frequency_score <= 2 then 'Onboarding campaign, product recommendations'
            when recency_score <= 2 and monetary_score >= 3 then 'Win-back campaign, special discount'
            when recency_score <= 2 and frequency_score <= 2 then 'Re-engagement or sunset'
            else 'Standard nurture campaign'
        end as recommended_action

    from customer_metrics
)

select * from segmentation;

-- name: accepted_values_dim_customer_segments_customer_segment kind: test
with all_values as (
    select customer_segment as value_field, count(*) as n_records
    from marts.dim_customer_segments
    group by customer_segment
)
select * from all_values
where value_field not in ('Champions', 'Loyal Customers', 'New Customers',
                          'Big Spenders', 'At Risk', 'Cant Lose Them',
                          'Hibernating', 'Lost', 'Others');

-- name: fct_product_performance kind: model
create or replace table marts.fct_product_performance as
with product_metrics as (
    select * from intermediate.int_product_metrics
),

ranked_products as (
    select
        *,

        -- Rankings
        row_number() over (order by revenue desc) as revenue_rank,
        row_number() over (order by units_sold desc) as units_rank,
        row_number() over (order by total_profit desc) as profit_rank,

        -- Category share
        revenue / sum(revenue) over (partition by category) as category_revenue_share,

        -- Performance classification
        case
            when revenue >= (select percentile_cont(0.8) within group (order by revenue) from product_metrics) then 'Star'
            when revenue >= (select percentile_cont(0.5) within group (order by revenue) from product_metrics) then 'Performer'
            when revenue >= (select percentile_cont(0.2) within group (order by revenue) from product_metrics) then 'Average'
            else 'Underperformer'
        end as performance_tier

    from product_metrics
)

select * from ranked_products;

-- name: ml_customer_features kind: model
create or replace table ml.ml_customer_features as
with customer_metrics as (
    select * from marts.fct_customer_metrics
),

customer_orders as (
    select * from intermediate.int_customer_orders
),

-- DuckDB change: the seed's lag() inside avg() is computed here first
customer_orders_with_previous as (
    select
        *,
        lag(order_date) over (partition by customer_id order by order_date) as previous_order_date
    from customer_orders
),

-- Behavioral features
customer_behavior as (
    select
        customer_id,

        -- Order patterns
        stddev(order_total) as order_value_volatility,
        max(order_total) as max_order_value,
        min(order_total) as min_order_value,

        -- Time-based patterns
        avg(datediff('day',
            previous_order_date,
            order_date
        )) as avg_days_between_orders,

        -- Trend
        case
            when count(*) >= 3 then
                (sum(case when order_date >= current_date - 90 then 1 else 0 end)::double /
                 nullif(sum(case when order_date >= current_date - 180
                          and order_date < current_date - 90 then 1 else 0 end)::double, 0))
            else null
        end as order_trend_ratio

    from customer_orders_with_previous
    group by 1
),

-- Final feature set for ML
ml_features as (
    select
        cm.customer_id,

        -- Target variable (for supervised learning)
        case when cm.churn_risk in ('High', 'Medium') then 1 else 0 end as is_churn_risk,

        -- Demographic features
        cm.country,
        datediff('day', cm.customer_created_at, current_date) as account_age_days,

        -- RFM features
        cm.recency_days,
        cm.frequency,
        cm.monetary_value,
        cm.avg_order_value,
        cm.recency_score,
        cm.frequency_score,
        cm.monetary_score,
        cm.rfm_total_score,

        -- Derived features
        cm.customer_tenure_days,
        case when cm.frequency > 0 then cm.monetary_value / cm.frequency else 0 end as revenue_per_order,
        case when cm.customer_tenure_days > 0 then cm.frequency::double / cm.customer_tenure_days * 30 else 0 end as orders_per_month,

        -- Behavioral features
        cb.order_value_volatility,
        cb.max_order_value,
        cb.min_order_value,
        cb.avg_days_between_orders,
        cb.order_trend_ratio,

        -- Engagement features
        case when cm.recency_days <= 30 then 1 else 0 end as is_active_last_30d,
        case when cm.recency_days <= 90 then 1 else 0 end as is_active_last_90d,

        -- Value features
        cm.predicted_clv_12m,
        case when cm.monetary_value > 0 then cm.predicted_clv_12m / cm.monetary_value else 0 end as clv_growth_multiplier,

        current_timestamp as feature_generated_at

    from customer_metrics cm
    left join customer_behavior cb on cm.customer_id = cb.customer_id
)

select * from ml_features;

-- name: unique_ml_customer_features_customer_id kind: test
select customer_id as unique_field, count(*) as n_records
from ml.ml_customer_features
where customer_id is not null
group by customer_id
having count(*) > 1;

-- name: not_null_ml_customer_features_customer_id kind: test
select customer_id from ml.ml_customer_features where customer_id is null;
