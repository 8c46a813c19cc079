"""What the project is: the model files and their headers, check declarations, column lineage.

No writes and no Dagster: everything here reads files and parses SQL.
"""
