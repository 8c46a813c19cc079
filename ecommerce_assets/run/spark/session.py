"""A Spark session from the settings: through Spark Connect (`sc://host:15002`, how a cluster is
reached), or in this process from a master URL (`local[*]`, `spark://host:7077`).

In this process, tables persist in a Hive metastore: with a local warehouse folder, an embedded
Derby database inside it (`<warehouse>/metastore_db`), which admits one process at a time, as a
DuckDB file admits one writer. A cluster or a Connect server brings its own metastore.
"""

from __future__ import annotations

from pathlib import Path

# Small tables and two cores: Spark's default of 200 shuffle partitions costs ~200 tasks per join.
LOCAL_CONF = {
    "spark.sql.shuffle.partitions": "4",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    # Dates and the run's timestamp as DuckDB's: no time zone shift.
    "spark.sql.session.timeZone": "UTC",
}


def local_conf(warehouse_path: str) -> dict[str, str]:
    """What a session in this process needs to keep its tables in `warehouse_path`."""
    conf = {**LOCAL_CONF, "spark.sql.warehouse.dir": warehouse_path, "spark.sql.catalogImplementation": "hive"}
    if "://" not in warehouse_path:
        Path(warehouse_path).mkdir(parents=True, exist_ok=True)
        conf["spark.hadoop.javax.jdo.option.ConnectionURL"] = (
            f"jdbc:derby:;databaseName={warehouse_path}/metastore_db;create=true"
        )
        # derby.log beside the metastore, not in the current directory.
        conf["spark.driver.extraJavaOptions"] = f"-Dderby.system.home={warehouse_path}"
    return conf


def spark_session(remote: str, master: str, warehouse_path: str, app_name: str = "ecommerce-assets"):
    """The session of the settings (see settings.py: ECOMMERCE_SPARK_REMOTE or _MASTER)."""
    from pyspark.sql import SparkSession

    if remote:
        return SparkSession.builder.remote(remote).appName(app_name).getOrCreate()
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in local_conf(warehouse_path).items():
        builder = builder.config(key, value)
    session = builder.enableHiveSupport().getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
