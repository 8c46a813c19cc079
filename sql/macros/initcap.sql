-- PostgreSQL's initcap, which DuckDB lacks: a letter is upper-cased after any character that is
-- not a letter or digit, every other letter lower-cased. Splitting into runs of letters/digits and
-- runs of everything else makes that one upper() on the first character of each run. Most names
-- are one run, and for them the split is skipped: it costs ten times the rest on millions of rows.
create or replace macro initcap(s) as case
    when not regexp_matches(s, '[^\p{L}\p{N}]') then upper(s[1]) || lower(s[2:])
    else array_to_string(
        list_transform(
            regexp_extract_all(s, '[\p{L}\p{N}]+|[^\p{L}\p{N}]+'),
            lambda part: upper(part[1]) || lower(part[2:])
        ),
        ''
    )
end;
