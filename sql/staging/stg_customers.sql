/*
description: Cleaned and standardized customer data, one row per customer. Customers with an invalid email are kept (email NULL, is_valid_email false) so their orders never become orphans.
tags: [customer]
columns:
  customer_id:
    description: Primary key for customers
    checks: [unique, not_null]
  email:
    description: Customer email (cleaned and lowercased); NULL when the raw email is not valid
    checks:
      - not_null: {severity: warn}
  first_name: {description: "First name, trimmed and capitalized"}
  last_name: {description: "Last name, trimmed and capitalized"}
  country: {description: "ISO country code, trimmed and upper-cased"}
  customer_created_at: {description: Date the customer account was created}
  is_valid_email: {description: "Flag indicating email validity (non-empty and contains '@', judged on the cleaned email)"}
  loaded_at: {description: When the raw row was loaded (the run's timestamp)}
*/
-- Every raw row but those stg_rejected_rows rejects (and records there with their reason).
with source as (
    select raw_row.*
    from raw.raw_customers as raw_row
    anti join staging.stg_rejected_rows as rejected
        on rejected.source = 'raw_customers' and rejected.key is not distinct from raw_row.customer_id
),

cleaned as (
    select
        customer_id,
        nullif(lower(trim(email)), '') as cleaned_email,
        initcap(trim(first_name)) as first_name,
        initcap(trim(last_name)) as last_name,
        upper(trim(country)) as country,
        created_at as customer_created_at,
        _loaded_at as loaded_at
    from source
),

flagged as (
    select
        *,
        coalesce(cleaned_email like '%@%', false) as is_valid_email
    from cleaned
)

select
    customer_id,
    case when is_valid_email then cleaned_email end as email,
    first_name,
    last_name,
    country,
    customer_created_at,
    is_valid_email,
    loaded_at
from flagged
