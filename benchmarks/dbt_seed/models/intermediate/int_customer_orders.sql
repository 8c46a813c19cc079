{{ config(
    materialized='table',
    tags=['intermediate', 'customer']
) }}

with orders as (
    select * from {{ ref('stg_orders') }}
    where is_completed = true
),

order_items as (
    select * from {{ ref('stg_order_items') }}
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

select * from order_totals
