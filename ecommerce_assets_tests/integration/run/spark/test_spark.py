"""The engines agree: the same models and checks built by DuckDB and by Spark (local mode, from the
pip-installed pyspark) give the same rows, value for value (doubles rounded), and the same check
outcomes; on data with rejects; and a failing blocking check holds the same tables back on both.

One Spark session for the module (a JVM costs ~10-30 s to start), stopped whatever happens.
"""

from __future__ import annotations

import shutil

import pytest

from ecommerce_assets.errors import RunFailed
from ecommerce_assets.generate import generate
from ecommerce_assets.project.sources import RAW_TABLES
from ecommerce_assets.run.spark.session import local_conf
from ecommerce_assets_tests.conftest import DATA, ROOT
from ecommerce_assets_tests.integration.run.spark.engines import assert_same_tables, duckdb_build, spark_build

pyspark = pytest.importorskip("pyspark")


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    from pyspark.sql import SparkSession

    warehouse = tmp_path_factory.mktemp("spark")
    builder = SparkSession.builder.master("local[2]").appName("ecommerce-assets-tests")
    for key, value in {**local_conf(str(warehouse)), "spark.sql.shuffle.partitions": "2"}.items():
        builder = builder.config(key, value)
    session = builder.enableHiveSupport().getOrCreate()
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture(autouse=True)
def empty_warehouse(spark):
    """Each test starts from an empty Spark warehouse, as each DuckDB build starts from a new file (the
    sudden-drop checks compare with the last publish)."""
    for (schema,) in spark.sql("show databases").collect():
        if schema != "default":
            spark.sql(f"drop database {schema} cascade")


def test_the_bundled_data_gives_the_same_tables_and_check_outcomes(spark, tmp_path):
    wh, duckdb_outcomes = duckdb_build(tmp_path, DATA)
    nodes, spark_outcomes, published = spark_build(spark, tmp_path, DATA)
    assert published == {n.name for n in nodes}
    assert spark_outcomes == duckdb_outcomes
    assert_same_tables(spark, wh, nodes)


def test_generated_data_with_rejects_gives_the_same_rejects_and_tables(spark, tmp_path):
    data = tmp_path / "dirty"
    generate(data, 300, dirty=0.05, seed=7)
    wh, duckdb_outcomes = duckdb_build(tmp_path, data)
    assert wh.scalar("select count(*) from staging.stg_rejected_rows") > 0
    nodes, spark_outcomes, _ = spark_build(spark, tmp_path, data)
    assert spark_outcomes == duckdb_outcomes
    assert_same_tables(spark, wh, nodes)


# The product chain, from the raw files up: what a failed check on stg_products holds back.
PRODUCT_CHAIN = {
    *(r.name for r in RAW_TABLES),
    "stg_rejected_rows",
    "stg_products",
    "stg_orders",
    "stg_order_items",
    "int_customer_product_sales",
    "int_product_metrics",
    "fct_product_performance",
    "top_products_by_tier",
}


def test_a_failing_blocking_check_holds_back_the_same_tables(spark, tmp_path):
    # Product 102 made a second 101 in stg_products: its blocking `unique` check fails on both engines.
    sql_dir = tmp_path / "sql"
    shutil.copytree(ROOT / "sql", sql_dir)
    model = sql_dir / "staging" / "stg_products.sql"
    duplicate = "    case when product_id = 102 then 101 else product_id end as product_id,\n"
    model.write_text(model.read_text().replace("    product_id,\n", duplicate, 1))
    wh, duckdb_outcomes = duckdb_build(tmp_path, DATA, sql_dir, PRODUCT_CHAIN)
    nodes, spark_outcomes, published = spark_build(spark, tmp_path, DATA, sql_dir, PRODUCT_CHAIN)
    assert duckdb_outcomes[("stg_products", "unique_product_id")] is False
    assert spark_outcomes == duckdb_outcomes
    in_duckdb = {t for (t,) in wh.query("select table_name from information_schema.tables")}
    assert published == in_duckdb & PRODUCT_CHAIN
    assert published.isdisjoint({"stg_products", "int_product_metrics", "fct_product_performance"})


def test_a_value_that_does_not_convert_fails_the_load_naming_the_file(spark, tmp_path):
    data = tmp_path / "bad"
    shutil.copytree(DATA, data)
    customers = data / "raw_customers.csv"
    lines = customers.read_text().splitlines()
    customers.write_text("\n".join([lines[0], "abc" + lines[1][lines[1].index(",") :], *lines[2:]]) + "\n")
    with pytest.raises(RunFailed) as failed:
        spark_build(spark, tmp_path, data, names={"raw_customers"})
    assert f"{customers}: could not load into raw.raw_customers (the previous table is kept)" in str(failed.value)
    assert "abc" in str(failed.value)
