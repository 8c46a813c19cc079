"""What the project is: the raw tables and the model files (headers, SQL, check declarations), the
node protocol both satisfy, the @changed macro and the column lineage.

No writes and no Dagster: everything here reads files and parses SQL.
"""
