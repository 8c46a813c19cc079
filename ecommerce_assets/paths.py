"""Where the project's files are: in a checkout, and in an installed package.

In a checkout (`pip install -e .`, or running from the source tree) the models are the top-level
sql/, the sample data is data/, and relative settings paths resolve against the checkout root.
An installed wheel ships the models as ecommerce_assets/sql and the sample CSVs as
ecommerce_assets/sample_data (see pyproject.toml), and relative settings paths resolve against
the current working directory.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
_CHECKOUT = PACKAGE_DIR.parent
IN_CHECKOUT = (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "sql").is_dir()

# The models: the checkout's top-level sql/ (edited in place), or the copy the wheel ships.
SQL_DIR = _CHECKOUT / "sql" if IN_CHECKOUT else PACKAGE_DIR / "sql"

# The bundled sample CSVs: the checkout's data/, or the copy the wheel ships.
SAMPLE_DATA_DIR = _CHECKOUT / "data" if IN_CHECKOUT else PACKAGE_DIR / "sample_data"

# What relative paths in the settings (ECOMMERCE_DUCKDB_PATH, ECOMMERCE_DATA_DIR, ...) are relative
# to: the checkout root, or, for an installed package, the working directory at import.
PROJECT_DIR = _CHECKOUT if IN_CHECKOUT else Path.cwd()


def default_data_dir(target: str, project_dir: Path = PROJECT_DIR, sample_dir: Path = SAMPLE_DATA_DIR) -> Path:
    """The raw files' directory when ECOMMERCE_DATA_DIR is not set.

    `<project_dir>/data` when it exists. Otherwise the `dev` target falls back to the sample data
    shipped in the package (each raw load records the files it read as `files_read`); any other
    target (prod) has no fallback: `<project_dir>/data`, and the loads fail if it is missing.
    """
    data = project_dir / "data"
    if data.is_dir() or target != "dev" or not sample_dir.is_dir():
        return data
    return sample_dir
