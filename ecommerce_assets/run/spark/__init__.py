"""The Spark warehouse: the project's DuckDB SQL transpiled to Spark SQL, and runs that publish it."""
