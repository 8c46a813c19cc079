{{ config(
    materialized='table',
    tags=['intermediate', 'product']
) }}

with order_items as (
    select * from {{ ref('stg_order_items') }}
),

orders as (
    select * from {{ ref('stg_orders') }}
    where is_completed = true
),

products as (
    select * from {{ ref('stg_products') }}
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
left join product_sales ps on p.product_id = ps.product_id
