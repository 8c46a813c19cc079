"""The files a run writes beside its tables (exports, the readers' copy): where they go, and where
they wait, hidden, until the run publishes them (a rename on the same file system)."""

from __future__ import annotations

from pathlib import Path

STAGED_SUFFIX = ".staged"


def output_path(output_dir: Path, folder: str, file_name: str) -> Path:
    directory = Path(output_dir) / folder
    directory.mkdir(parents=True, exist_ok=True)
    return directory / file_name


def staged_path(path: Path) -> Path:
    """Where a run writes a file it publishes as `path`: hidden, beside it (same file system)."""
    return path.with_name(f".{path.name}{STAGED_SUFFIX}")


def drop_staged(folder: Path) -> list[str]:
    """Removes the staged files a run left in `folder`'s subfolders (not published, or the run
    died); returns them."""
    if not Path(folder).is_dir():
        return []
    dropped = []
    for staged in Path(folder).glob(f"*/.*{STAGED_SUFFIX}"):
        staged.unlink(missing_ok=True)
        dropped.append(str(staged))
    return dropped
