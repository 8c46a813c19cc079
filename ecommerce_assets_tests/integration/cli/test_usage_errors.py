"""Usage and configuration errors: one line naming the setting or flag, exit 2, before any data changes."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from ecommerce_assets import cli
from ecommerce_assets.errors import SettingError
from ecommerce_assets.project.sources import RAW_TABLES
from ecommerce_assets.settings import Settings
from ecommerce_assets_tests.conftest import make_warehouse

ECOMMERCE_ASSETS = Path(sys.executable).parent / "ecommerce-assets"


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("ECOMMERCE_TARGET", "staging", "use one of dev, prod"),
        ("ECOMMERCE_DUCKDB_MEMORY_LIMIT", "lots", "a size such as 2GB"),
        ("ECOMMERCE_DUCKDB_THREADS", "abc", "a whole number of at least 0"),
        ("ECOMMERCE_CONCURRENCY", "0", "a whole number of at least 1"),
        ("ECOMMERCE_FRESHNESS_HOURS", "1.5", "a whole number of at least 1"),
        ("ECOMMERCE_SCHEDULE_CRON", "every day", "a cron expression"),
        ("ECOMMERCE_SCHEDULE_TIMEZONE", "Mars/Base", "an IANA time zone"),
        ("ECOMMERCE_ENGINE", "postgres", "use one of duckdb, spark"),
        ("ECOMMERCE_SPARK_REMOTE", "http://host:15002", "a Spark Connect URL such as sc://host:15002"),
        ("ECOMMERCE_SPARK_MASTER", "local[two]", "a Spark master URL such as local[*]"),
        ("ECOMMERCE_WAREHOUSE_PATH", " ", "a folder or a URL"),
    ],
)
def test_a_bad_setting_names_the_variable_its_value_and_what_is_allowed(variable, value, allowed):
    with pytest.raises(SettingError) as error:
        Settings.from_env({variable: value})
    assert str(error.value).startswith(f"{variable}={value!r}") and allowed in str(error.value)


def test_spark_is_reached_one_way():
    with pytest.raises(
        SettingError, match="ECOMMERCE_SPARK_MASTER='local.1.': set it or ECOMMERCE_SPARK_REMOTE, not both"
    ):
        Settings.from_env({"ECOMMERCE_SPARK_REMOTE": "sc://127.0.0.1:15002", "ECOMMERCE_SPARK_MASTER": "local[1]"})
    local = Settings.from_env({"ECOMMERCE_ENGINE": "spark"})
    assert (local.spark_master, local.spark_remote, local.engine) == ("local[*]", "", "spark")
    assert Settings.from_env({"ECOMMERCE_SPARK_REMOTE": "sc://h:15002"}).spark_master == ""
    assert Settings.from_env({"ECOMMERCE_WAREHOUSE_PATH": "s3a://b/w"}).warehouse_path == "s3a://b/w"


def test_a_database_path_that_is_a_directory_fails_at_once(tmp_path):
    with pytest.raises(SettingError, match="ECOMMERCE_DUCKDB_PATH=.* is a directory"):
        Settings.from_env({"ECOMMERCE_DUCKDB_PATH": str(tmp_path)})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["build", "--select", "tag:mll"], "--select 'tag:mll' matches no asset; closest: tag:ml"),
        (["build", "--select", "fct_customer_metric"], "closest: fct_customer_metrics"),
        (["build", "--analysis-date", "2024-02-30"], "--analysis-date='2024-02-30' is not a YYYY-MM-DD date"),
    ],
)
def test_a_bad_flag_is_one_line_and_exit_2_before_anything_runs(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ecommerce-assets {argv[0]}: ") and message in err and "\n" not in err


def _cli(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ECOMMERCE_")}
    env = {**clean, "ECOMMERCE_DUCKDB_PATH": str(tmp_path / "w.duckdb"), **env}
    return subprocess.run([str(ECOMMERCE_ASSETS), *argv], env=env, capture_output=True, text=True, timeout=300)


def test_check_on_a_warehouse_never_built_says_build_first_and_creates_nothing(tmp_path):
    done = _cli(tmp_path, "check")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith("run `ecommerce-assets build` first")
    assert list(tmp_path.iterdir()) == []


def test_a_bad_setting_stops_the_cli_with_one_line_not_a_traceback(tmp_path):
    done = _cli(tmp_path, "build", ECOMMERCE_DUCKDB_THREADS="abc")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "ecommerce-assets build: ECOMMERCE_DUCKDB_THREADS='abc': use a whole number of at least 0"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_data_folder_that_does_not_exist_is_a_usage_error_that_writes_nothing(tmp_path):
    missing = tmp_path / "nonexistent"
    done = _cli(tmp_path, "build", ECOMMERCE_DATA_DIR=str(missing), ECOMMERCE_OUTPUT_DIR=str(tmp_path / "out"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"ecommerce-assets build: ECOMMERCE_DATA_DIR={str(missing)!r}: no such folder (the folder of the raw_* files)"
    )
    assert list(tmp_path.iterdir()) == []


def test_the_data_dir_flag_is_named_when_it_is_the_folder_that_is_missing(tmp_path, capsys):
    missing = tmp_path / "nonexistent"
    assert cli.main(["build", "--data-dir", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"ecommerce-assets build: --data-dir={str(missing)!r}: no such folder (the folder of the raw_* files)"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_run_from_the_ui_with_no_data_folder_fails_before_it_opens_the_warehouse(tmp_path):
    warehouse = make_warehouse(tmp_path, data_dir=tmp_path / "nonexistent")
    result = warehouse.run()
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_failure_data.error.message.strip().endswith(
        f"ECOMMERCE_DATA_DIR={str(tmp_path / 'nonexistent')!r}: no such folder (the folder of the raw_* files)"
    )
    assert not Path(warehouse.settings.duckdb_path).exists()


def test_a_run_of_models_alone_needs_no_data_folder(tmp_path):
    """Only a run that loads raw tables reads the folder: models built from loaded tables do not."""
    raw = [dg.AssetKey(r.name) for r in RAW_TABLES]
    models = [dg.AssetKey("stg_rejected_rows"), dg.AssetKey("stg_orders")]
    assert make_warehouse(tmp_path).run(selection=raw + models).success
    without_data = make_warehouse(tmp_path, data_dir=tmp_path / "nonexistent")
    assert without_data.run(selection=models).success
