"""Names a package exports but imports on first use, so ``sslstack --help`` and a cached
``extract`` do not pay for scikit-learn, Optuna, pandas or torch (docs/benchmarks.md)."""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from typing import Any


class _Exports(types.ModuleType):
    """A package whose lazily exported names are never shadowed by its submodules.

    Importing a submodule sets it as an attribute of its package. When a function shares its
    module's name (``sslstack.ensemble.predict`` holds ``predict``), importing the module
    before the function was first used left ``from sslstack.ensemble import predict`` giving
    the module. A submodule named like an export is therefore not set on the package; it stays
    importable through ``sys.modules`` (``from pkg.mod import x``, ``importlib``).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        where = self.__dict__.get("_lazy_where", {})
        if (
            isinstance(value, types.ModuleType)
            and name in where
            and value.__name__ == f"{self.__name__}.{name}"
        ):
            return
        super().__setattr__(name, value)


def lazy_exports(
    package: str, namespace: dict[str, Any], where: dict[str, str]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``name`` from ``where[name]`` (a module relative to
    ``package``) on first access and keeps it in the package's ``namespace``."""

    namespace["_lazy_where"] = where
    module = sys.modules.get(package)
    if module is not None and type(module) is types.ModuleType:
        module.__class__ = _Exports
        for name in where:  # a submodule imported before this line
            value = namespace.get(name)
            if isinstance(value, types.ModuleType) and value.__name__ == f"{package}.{name}":
                del namespace[name]

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name], package), name)
        namespace[name] = value
        return value

    return __getattr__
