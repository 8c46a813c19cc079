"""Where the project's files are: in a checkout, and in an installed package."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
_CHECKOUT = PACKAGE_DIR.parent
IN_CHECKOUT = (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "sql").is_dir()

# The models: the checkout's top-level sql/ (edited in place), or the copy the wheel ships.
SQL_DIR = _CHECKOUT / "sql" if IN_CHECKOUT else PACKAGE_DIR / "sql"
