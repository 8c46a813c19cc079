{#- The seed relies on PostgreSQL's initcap, which DuckDB lacks. seed_baseline.py runs the project's
    sql/macros/initcap.sql for it; dbt cannot read a file outside its project, so this is a copy of
    that statement: keep the two equal. Created by the on-run-start hook, before any model. -#}
{% macro create_initcap() %}
create or replace macro initcap(s) as case
    when not regexp_matches(s, '[^\p{L}\p{N}]') then upper(s[1]) || lower(s[2:])
    else array_to_string(
        list_transform(
            regexp_extract_all(s, '[\p{L}\p{N}]+|[^\p{L}\p{N}]+'),
            lambda part: upper(part[1]) || lower(part[2:])
        ),
        ''
    )
end
{% endmacro %}
