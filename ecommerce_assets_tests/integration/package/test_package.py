"""`pip install .` gives a package that works outside the checkout, and holds only the runtime code.

The wheel is built from a copy of the project's files (so the build's build/ and *.egg-info never
land in the checkout, and stale ones there cannot leak into the wheel), installed into a throwaway
venv that borrows this venv's dependencies (no downloads), and run from a directory outside the
repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib.metadata import version
from pathlib import Path

from ecommerce_assets.definitions import defs
from ecommerce_assets.paths import default_data_dir
from ecommerce_assets.project.models import load_models
from ecommerce_assets.project.sources import RAW_TABLES
from ecommerce_assets_tests.conftest import ROOT

# Runtime state and build output that `pip install git+...` would never see.
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    "warehouse",
    "output",
    ".dagster_home",
    "*.duckdb",
    "*.duckdb.*",
)
PROBE = """
import json, ecommerce_assets
from ecommerce_assets.definitions import defs
from ecommerce_assets.paths import SQL_DIR
from ecommerce_assets.settings import Settings
graph = defs.resolve_asset_graph()
print(json.dumps({
    "package": ecommerce_assets.__file__,
    "sql_dir": str(SQL_DIR),
    "assets": len(graph.get_all_asset_keys()),
    "checks": len(graph.asset_check_keys),
    "dev_data_dir": Settings.from_env({}).data_dir,
    "prod_data_dir": Settings.from_env({"ECOMMERCE_TARGET": "prod"}).data_dir,
    "duckdb_path": Settings.from_env({}).duckdb_path,
}))
"""


def test_wheel_installs_and_builds_outside_the_checkout(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())

    # The models and their unit-test cases (`ecommerce-assets test` runs them from an install too).
    shipped = [*(ROOT / "sql").rglob("*.sql"), *(ROOT / "sql").rglob("*.tests.yaml")]
    sql = {f"ecommerce_assets/sql/{p.relative_to(ROOT / 'sql').as_posix()}" for p in shipped}
    assert "ecommerce_assets/sql/macros/initcap.sql" in sql and sql <= names
    samples = {f"ecommerce_assets/sample_data/{p.name}" for p in (ROOT / "data").glob("*.csv")}
    assert len(samples) == 4 and samples <= names
    # Only the runtime package: no tests, no benchmarks/, no stray data files beside the modules.
    assert {n.split("/")[0] for n in names} == {"ecommerce_assets", "ecommerce_assets-0.1.0.dist-info"}
    modules = {
        f"ecommerce_assets/{p.relative_to(ROOT / 'ecommerce_assets').as_posix()}"
        for p in (ROOT / "ecommerce_assets").rglob("*.py")
    }
    assert {n for n in names if n.startswith("ecommerce_assets/")} == modules | sql | samples

    venv = tmp_path / "venv"
    python = _venv_with_this_venvs_packages(venv, wheel)
    work = tmp_path / "work"  # the working directory: no data/ here, so dev reads the sample data
    work.mkdir()
    assert not work.resolve().is_relative_to(ROOT)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ECOMMERCE_") and k not in {"PYTHONPATH", "PYTHONHOME", "DAGSTER_HOME"}
    }

    probe = subprocess.run([python, "-c", PROBE], cwd=work, env=env, capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    installed = Path(found["package"]).parent
    assert installed.is_relative_to(venv)  # the wheel's copy, not /work/main's
    assert Path(found["sql_dir"]) == installed / "sql"
    graph = defs.resolve_asset_graph()  # the checkout's definitions
    assert (found["assets"], found["checks"]) == (len(graph.get_all_asset_keys()), len(graph.asset_check_keys))
    assert Path(found["dev_data_dir"]) == installed / "sample_data"
    assert Path(found["prod_data_dir"]) == work.resolve() / "data"  # prod: no fallback
    assert Path(found["duckdb_path"]) == work.resolve() / "warehouse" / "dev.duckdb"  # relative to the cwd

    env |= {"ECOMMERCE_DUCKDB_PATH": str(tmp_path / "wh" / "dev.duckdb"), "ECOMMERCE_OUTPUT_DIR": str(tmp_path / "out")}
    run = subprocess.run(
        [venv / "bin" / "ecommerce-assets", "build"], cwd=work, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"{len(RAW_TABLES) + len(load_models())} assets materialized" in run.stdout and "run succeeded" in run.stdout
    assert (tmp_path / "wh" / "dev.duckdb").is_file() and not (work / "warehouse").exists()


def test_default_data_dir(tmp_path):
    sample = tmp_path / "sample"
    sample.mkdir()
    project = tmp_path / "project"
    project.mkdir()
    assert default_data_dir("dev", project, sample) == sample  # no data/: dev falls back to the sample data
    assert default_data_dir("prod", project, sample) == project / "data"  # prod never does
    (project / "data").mkdir()
    assert default_data_dir("dev", project, sample) == project / "data"
    assert default_data_dir("prod", project, sample) == project / "data"


def _build_wheel(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--quiet",
        "--wheel-dir",
        str(tmp_path / "dist"),
        str(src),
    ]
    # This venv's setuptools when it can build the wheel itself (bdist_wheel since 70.1, and
    # pyproject.toml asks for >= 68); otherwise pip's isolated build fetches setuptools from PyPI.
    if _version_tuple(version("setuptools")) >= (70, 1):
        cmd.append("--no-build-isolation")
    subprocess.run(cmd, check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("ecommerce_assets-*.whl")
    return wheel


def _venv_with_this_venvs_packages(venv: Path, wheel: Path) -> Path:
    """A venv with only the wheel installed; dagster & co. come from this venv via a .pth file.

    The .pth only appends this venv's site-packages to sys.path (their own .pth files, like the
    editable install's finder, are not run), so `ecommerce_assets` is the wheel's.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "--quiet",
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    (site,) = venv.glob("lib/python*/site-packages")
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "borrowed_dependencies.pth").write_text("".join(f"{p}\n" for p in ours))
    return python


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())
