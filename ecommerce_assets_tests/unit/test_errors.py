"""Every error the project raises derives from one root, so `except EcommerceAssetsError` is complete
(a warning, such as lineage.LineageWarning, is not an error)."""

import importlib
import inspect
import pkgutil

import ecommerce_assets
from ecommerce_assets import errors
from ecommerce_assets.errors import EcommerceAssetsError, ModelError, SettingError, UsageError


def _modules():
    for info in pkgutil.walk_packages(ecommerce_assets.__path__, "ecommerce_assets."):
        if not info.name.startswith(("ecommerce_assets.sql", "ecommerce_assets.sample_data")):
            yield importlib.import_module(info.name)


def test_every_exception_class_of_the_package_derives_from_the_root():
    found = {
        f"{module.__name__}.{name}": cls
        for module in _modules()
        for name, cls in vars(module).items()
        if inspect.isclass(cls)
        and issubclass(cls, BaseException)
        and not issubclass(cls, Warning)
        and cls.__module__ == module.__name__
    }
    assert "ecommerce_assets.errors.ModelError" in found
    assert {name for name, cls in found.items() if not issubclass(cls, EcommerceAssetsError)} == set()
    # Public errors have one home; a private one is a module's own control flow that never escapes.
    homeless = {
        n for n in found if not n.startswith("ecommerce_assets.errors.") and not n.rsplit(".", 1)[1].startswith("_")
    }
    assert homeless == set()


def test_what_a_user_mistypes_is_a_usage_error_and_callers_catching_builtins_still_do():
    assert issubclass(SettingError, UsageError) and issubclass(SettingError, ValueError)
    assert issubclass(ModelError, ValueError) and issubclass(errors.RawLoadError, RuntimeError)
