"""ruff's lint and format check pass on the whole project (its settings: pyproject.toml)."""

import subprocess
import sys
from pathlib import Path

import pytest

from ecommerce_assets_tests.conftest import ROOT

RUFF = Path(sys.executable).parent / "ruff"


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff_passes(command):
    done = subprocess.run([str(RUFF), *command], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
