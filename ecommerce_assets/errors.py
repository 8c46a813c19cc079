"""Every error the project raises, under one root.

`except EcommerceAssetsError` catches all of them and nothing of Python's, DuckDB's or Dagster's.
A `UsageError` is something the user typed (a flag, a setting, a folder): the CLI prints it as
one line and exits 2 before any data is read or written. The builtin second bases keep what
callers caught before the root existed (`except ValueError` around a header's validation).
"""

from __future__ import annotations


class EcommerceAssetsError(Exception):
    """The root of every error this project raises."""


class UsageError(EcommerceAssetsError):
    """A flag or setting the command cannot work with; the message names it."""


class SettingError(UsageError, ValueError):
    """A bad ECOMMERCE_* setting: one line naming the variable, its value and what is allowed."""


class ModelError(EcommerceAssetsError, ValueError):
    """A model file that cannot be turned into an asset; the message names the file."""


class ChangedMacroError(EcommerceAssetsError, ValueError):
    """A `@changed(...)` reference a model cannot use (ModelError adds the model's file)."""


class AnalysisOutputError(ModelError):
    """A chart or export could not be made (disk full, bad output dir, matplotlib error...).

    A ModelError, so the factory records this one asset as failed (with this message) and goes
    on with the rest of the run instead of aborting the whole step.
    """


class RawLoadError(EcommerceAssetsError, RuntimeError):
    """A raw file that cannot be read as its declared table; the message names the file."""


class RunFailed(EcommerceAssetsError):
    """Some selected nodes failed; the others were built and their previous tables kept."""

    def __init__(self, failures: list[str]):
        self.failures = failures
        super().__init__(
            f"{len(failures)} asset(s) failed; their previous tables are unchanged:\n" + "\n".join(failures)
        )
