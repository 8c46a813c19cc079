"""What a newcomer sees in the UI after the terminal commands of docs/ui.md, on a fresh instance.

`dagster dev` (webserver and daemon) on a free loopback port with an empty $DAGSTER_HOME, then the
docs' commands for a run from a terminal, `dagster job launch -w workspace.yaml`: the daily graph,
then the churn model's training, on the bundled data. Asserted through Dagster's instance API,
which the UI reads: each run belongs to the code location and its job (what the job's Runs tab,
the timeline and re-execution match on), and every asset the runs could not build says so and
why (0 labelled customers for the model; no model for the scores). Every process the test started
is stopped at the end, whatever happens.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import dagster as dg
import pytest

from ecommerce_assets.defs.events import PHASES_TAG
from ecommerce_assets.ml.churn.assets import NOT_BUILT_TAG
from ecommerce_assets_tests.integration.package.test_deploy import _spawn, _wait_for
from ecommerce_assets_tests.integration.package.test_package import ROOT
from ecommerce_assets_tests.unit.defs.test_alerts import free_port

LOCATION = "ecommerce_assets"  # workspace.yaml's location_name
# Dagster's label of the location's repository: the tag the job's Runs tab filters on.
REPOSITORY_LABEL = f"__repository__@{LOCATION}"
# A ceiling on the waits, not a timing the test depends on.
DEADLINE_S = 300


@pytest.mark.slow
def test_terminal_runs_belong_to_their_job_and_unbuilt_assets_say_why(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    # A fresh instance, with deploy/dagster.yaml's one run at a time: the training run, launched
    # right after the daily one, waits in the queue for the tables it reads.
    (home / "dagster.yaml").write_text("concurrency:\n  runs:\n    max_concurrent_runs: 1\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ECOMMERCE_DUCKDB_PATH": str(tmp_path / "warehouse" / "dev.duckdb"),
        "ECOMMERCE_OUTPUT_DIR": str(tmp_path / "output"),
    }
    env.pop("ECOMMERCE_DATA_DIR", None)  # the bundled data
    bin_dir = Path(sys.executable).parent
    started = time.monotonic()
    deadline = started + DEADLINE_S
    with ExitStack() as stack, dg.DagsterInstance.from_config(str(home)) as instance:
        port = free_port()
        _spawn(
            [bin_dir / "dagster", "dev", "-h", "127.0.0.1", "-p", port],
            ROOT,
            env,
            tmp_path / "dagster_dev.log",
            stack,
            [],
        )

        def launch(job: str) -> str:
            """The docs' command; the run waits in the queue until dagster dev's daemon starts it."""
            before = {r.run_id for r in instance.get_runs()}
            subprocess.run(
                [bin_dir / "dagster", "job", "launch", "-w", "workspace.yaml", "-j", job],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
            )
            (run_id,) = {r.run_id for r in instance.get_runs()} - before
            return run_id

        run_ids = [launch("warehouse_job"), launch("churn_training_job")]
        _wait_for(
            lambda: all(instance.get_run_by_id(r).is_finished for r in run_ids),
            deadline,
            "the runs to finish",
            tmp_path,
        )
        records = [instance.get_run_record_by_id(r) for r in run_ids]
        assert records[1].start_time >= records[0].end_time  # one at a time, in the order launched
        daily, training = (r.dagster_run for r in records)

        for run in (daily, training):
            assert run.status == dg.DagsterRunStatus.SUCCESS
            origin = run.remote_job_origin.repository_origin
            assert (origin.code_location_origin.location_name, origin.repository_name) == (LOCATION, "__repository__")
            # The job's Runs tab and the overview's timeline ask for exactly this.
            listed = instance.get_runs(
                dg.RunsFilter(job_name=run.job_name, tags={".dagster/repository": REPOSITORY_LABEL})
            )
            assert [r.run_id for r in listed] == [run.run_id]

        # Green runs that left assets unbuilt say so, on the run and on each asset's page.
        assert daily.tags[NOT_BUILT_TAG] == "churn_scores"
        assert training.tags[NOT_BUILT_TAG] == "churn_model, churn_model_evaluation"
        assert PHASES_TAG in daily.tags
        for asset, run, reason in (
            ("churn_scores", daily, "no churn model yet"),
            ("churn_model", training, "0 labelled customers"),
            ("churn_model_evaluation", training, "0 labelled customers"),
        ):
            key = dg.AssetKey(asset)
            assert instance.get_latest_materialization_event(key) is None
            (observation,) = instance.fetch_observations(key, limit=1).records
            assert observation.run_id == run.run_id
            metadata = observation.asset_observation.metadata
            assert metadata["state"].value == "not built"
            assert reason in metadata["reason"].value
            assert metadata["what would change it"].value
        assert (
            "at least 200"
            in instance.fetch_observations(dg.AssetKey("churn_model"), limit=1)
            .records[0]
            .asset_observation.metadata["reason"]
            .value
        )
