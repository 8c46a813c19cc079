"""The daily-run benchmark end to end, at a tiny size: every run in order, each through the real CLI."""

import json
import subprocess
import sys

from ecommerce_assets_tests.conftest import ROOT


def test_the_daily_benchmark_runs_the_full_build_each_day_the_rerun_and_the_rebuild(tmp_path):
    cmd = [sys.executable, "-m", "benchmarks.daily", "--customers", "300", "--days", "2", "--workdir", str(tmp_path)]
    cmd.append("--no-dbt")  # where dbt is installed, it would add its own run (covered by its own code path)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "daily_report.json").read_text())
    runs = [r["run"] for r in report["runs"]]
    assert runs == ["full", "day 1", "day 2", "rerun", "full rebuild", "seed SQL"]
    assert all(r["exit_code"] == 0 for r in report["runs"])
    assert all((r["summary"] or "").endswith("run succeeded") for r in report["runs"] if r["run"] != "seed SQL")
    assert report["runs"][4]["ratio_to_full_rebuild"] == 1.0 and len(report["days"]) == 2
    assert any(line.startswith("dbt: ") and line.endswith("skipped") for line in done.stdout.splitlines())  # --no-dbt
    # The data and the warehouses are gone; the generated source stays for the next invocation.
    assert not (tmp_path / "data").exists() and not (tmp_path / "warehouse").exists()
    assert (tmp_path / "source" / ".daily.json").exists()
