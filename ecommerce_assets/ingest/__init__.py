"""Raw ingestion: which export files a raw table has, validated, and the typed SQL that reads them.

Reading only; run/duckdb/load.py stages the rows for the run's publish.
"""
