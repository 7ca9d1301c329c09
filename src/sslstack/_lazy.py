"""Names a package exports but imports on first use, so ``sslstack --help`` and a cached
``extract`` do not pay for scikit-learn, Optuna, pandas or torch (docs/benchmarks.md)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, namespace: dict[str, Any], where: dict[str, str]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``name`` from ``where[name]`` (a module relative to
    ``package``) on first access and keeps it in the package's ``namespace``."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name], package), name)
        namespace[name] = value
        return value

    return __getattr__


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one we may not signal still counts)."""
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
