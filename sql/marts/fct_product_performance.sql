/*
description: Product performance with revenue, unit and profit ranks, category revenue share and a performance tier from revenue percentiles.
tags: [product]
columns:
  product_id:
    description: Primary key
    checks: [unique, not_null]
  revenue_rank: {description: 1 = highest revenue (ties broken by product_id)}
  units_rank: {description: 1 = most units sold (ties broken by product_id)}
  profit_rank: {description: 1 = highest total profit (ties broken by product_id)}
  category_revenue_share: {description: Share of the category's revenue (NULL when the category sold nothing)}
  performance_tier:
    description: Star (top 20% revenue), Performer, Average, Underperformer (bottom 20% or no sales)
    checks:
      - accepted_values: {values: ['Star', 'Performer', 'Average', 'Underperformer']}
checks:
  - name: revenue_not_zero
    description: Products bring some completed-order revenue; none at all means the order line export came empty.
    sql: |
      select count(*) as products, coalesce(sum(revenue), 0) as revenue
      from marts.fct_product_performance
      having count(*) > 0 and coalesce(sum(revenue), 0) = 0
*/
with product_metrics as (
    select * from intermediate.int_product_metrics
),

-- One pass for the three tier boundaries instead of a subquery per row.
revenue_percentiles as (
    select
        percentile_cont(0.8) within group (order by revenue) as p80,
        percentile_cont(0.5) within group (order by revenue) as p50,
        percentile_cont(0.2) within group (order by revenue) as p20
    from product_metrics
)

select
    pm.*,
    row_number() over (order by pm.revenue desc, pm.product_id) as revenue_rank,
    row_number() over (order by pm.units_sold desc, pm.product_id) as units_rank,
    row_number() over (order by pm.total_profit desc, pm.product_id) as profit_rank,
    pm.revenue / nullif(sum(pm.revenue) over (partition by pm.category), 0) as category_revenue_share,
    case
        when pm.revenue = 0 then 'Underperformer'
        when pm.revenue >= rp.p80 then 'Star'
        when pm.revenue >= rp.p50 then 'Performer'
        when pm.revenue >= rp.p20 then 'Average'
        else 'Underperformer'
    end as performance_tier
from product_metrics as pm
cross join revenue_percentiles as rp
