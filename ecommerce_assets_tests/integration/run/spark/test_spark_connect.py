"""The way a cluster is reached: a Spark Connect server, started on a free loopback port from what
the pip package ships (`pyspark/sbin/start-connect-server.sh`), and the run as a client of it.
The server runs in its own process group, stopped whatever happens."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ecommerce_assets.project.sources import RAW_TABLES
from ecommerce_assets.run.spark.session import local_conf, spark_session
from ecommerce_assets_tests.conftest import DATA
from ecommerce_assets_tests.integration.run.spark.engines import assert_same_tables, duckdb_build, spark_build

pyspark = pytest.importorskip("pyspark")

# The raw files to staging: every load, the rejects and the staging models, with their checks.
STAGING = {
    *(r.name for r in RAW_TABLES),
    "stg_rejected_rows",
    "stg_customers",
    "stg_orders",
    "stg_order_items",
    "stg_products",
}
# A JVM on a loaded two-core machine can take a minute before it listens.
START_TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def connect_url(tmp_path_factory):
    home = Path(pyspark.__file__).parent
    work = tmp_path_factory.mktemp("connect")
    port = _free_port()
    conf = {
        **local_conf(str(work / "warehouse")),
        "spark.sql.shuffle.partitions": "2",
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
    }
    java_options = conf.pop("spark.driver.extraJavaOptions")
    command = [str(home / "sbin" / "start-connect-server.sh"), "--wait", "--master", "local[2]"]
    command += ["--driver-java-options", java_options]
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOG_DIR": str(work), "SPARK_PID_DIR": str(work)}
    log = (work / "server.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _listening(port):
            assert server.poll() is None, (work / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, f"no Spark Connect server on port {port} after {START_TIMEOUT_S} s"
            time.sleep(0.5)
        yield f"sc://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_a_run_through_spark_connect_equals_duckdb(connect_url, tmp_path):
    spark = spark_session(connect_url, "", "")
    try:
        wh, duckdb_outcomes = duckdb_build(tmp_path, DATA, names=STAGING)
        nodes, spark_outcomes, published = spark_build(spark, tmp_path, DATA, names=STAGING)
        assert published == STAGING
        assert spark_outcomes == duckdb_outcomes
        assert_same_tables(spark, wh, [n for n in nodes if n.name in STAGING])
    finally:
        spark.stop()
