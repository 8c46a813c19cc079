"""What one run is asked to do: where its files are, how many statements at a time, which date, and
the thresholds of its checks; the same on every engine."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunOptions:
    data_dir: Path
    output_dir: Path
    concurrency: int = 1
    full_refresh: bool = False
    analysis_date: dt.date | None = None
    # Where the published tables are copied for readers after each publish (None: no copy).
    serving_path: Path | None = None
    # The share of its rows a raw table or mart may lose against the last publish without a WARN.
    max_row_drop: float = 0.5
    # equals_full_rebuild compares the changed keys and one slice in this many of all customers
    # (the slice moves with the run's date): 1 compares whole tables on every run.
    verify_slices: int = 7

    def __post_init__(self):
        if self.concurrency < 1:
            raise ValueError(f"concurrency={self.concurrency}: use 1 or more")
        if self.verify_slices < 1:
            raise ValueError(f"verify_slices={self.verify_slices}: use 1 or more")

    @staticmethod
    def parse_date(value: str | None, setting: str = "analysis_date") -> dt.date | None:
        """A YYYY-MM-DD date, checked before anything is built; the message names `setting`."""
        if not value:
            return None
        try:
            date = dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{setting}={value!r} is not a YYYY-MM-DD date") from None
        # Measured to a future date, every recency would count days that have not happened.
        today = dt.datetime.now(dt.timezone.utc).date()
        if date > today:
            raise ValueError(f"{setting}={value!r} is in the future: use a date up to today ({today}, UTC)")
        return date
