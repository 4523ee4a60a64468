"""The model zoo: ``build_model(name, class_dim)``, ``list_models()``, ``get_model_meta(name)``.

Every family module in this package registers its variants on import; importing ``models`` imports all
of them (modules whose name starts with ``_`` and the helpers below are not families).
"""
import importlib
import pkgutil

from models.registry import (  # noqa: F401
    ModelMeta,
    UnknownModelError,
    build_model,
    get_model_meta,
    list_models,
    register_model,
)

_NOT_FAMILIES = {"registry", "base", "layers", "layout", "summary", "convert"}

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name not in _NOT_FAMILIES:
        importlib.import_module(f"models.{_module.name}")
