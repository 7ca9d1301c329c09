"""One registry shape for everything looked up by name: encoder families, built-in encoders,
model-file runtimes, poolings, sources, executors, heads, metrics, splitters, stack methods,
calibrators.

A :class:`Registry` is a read-only mapping (``reg[name]``, ``name in reg``, ``list(reg)``) that is
filled by :meth:`Registry.register` (as a decorator or a call), refuses a duplicate name, lists
its names for CLI choices and help, and raises the one error for an unknown name::

    HEADS: Registry[Head] = Registry("head", flag="HEAD")

    @HEADS.register("logreg")
    class LogRegHead: ...

    HEADS["svm"]  # ConfigError: HEAD svm: unknown head; choose from logreg, xgb, catboost, lgbm

Entries registered by modules the registry's own module does not import (an executor in its own
file, built-in encoders) are named in ``load=``: those modules are imported the first time the
registry is read. Names made on demand (``ece_<bins>``) come from ``fallback=``, and ``more=``
names them in the list of choices.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar, overload

from .errors import ConfigError, SslstackError

T = TypeVar("T")
_MISSING: Any = object()
_LOADING = threading.RLock()  # re-entrant: a module being loaded may read its registry


class DuplicateNameError(ValueError):
    """A second entry under a name a registry holds already (a programming error)."""


class Registry(Mapping[str, T], Generic[T]):
    """Entries of one kind, by name, in registration order.

    Args:
        kind: what an entry is, for messages ("head", "stack method").
        flag: the CLI flag or argument that takes a name (default ``--<kind>``).
        error: the exception an unknown name raises.
        load: modules that register entries of this registry, imported on first read.
        fallback: makes an entry for a name outside the table (``ece_7``), or returns None.
        more: choices the fallback accepts, as shown to people (``ece_<bins>``).
    """

    def __init__(
        self,
        kind: str,
        *,
        flag: str | None = None,
        error: type[SslstackError] = ConfigError,
        load: Sequence[str] = (),
        fallback: Callable[[str], T | None] | None = None,
        more: Sequence[str] = (),
    ) -> None:
        self.kind, self.flag, self.error = kind, flag or f"--{kind}", error
        self.fallback, self.more = fallback, tuple(more)
        self._load = tuple(load)
        self._entries: dict[str, T] = {}

    def _loaded(self) -> dict[str, T]:
        if self._load:
            with _LOADING:  # another thread reads the registry once every module is loaded
                while self._load:  # popped first: a loaded module may read the registry
                    module, *rest = self._load
                    self._load = tuple(rest)
                    importlib.import_module(module)
        return self._entries

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, entry: T) -> T: ...

    def register(self, name: str, entry: Any = None) -> Any:
        """Add ``entry`` under ``name`` (or decorate it); a name taken already is refused."""
        if entry is None:
            return lambda obj: self.register(name, obj)
        if name in self._entries:
            raise DuplicateNameError(f"{self.kind} {name!r} is registered already")
        self._entries[name] = entry
        return entry

    def get(self, name: str | None, default: Any = _MISSING) -> T:  # type: ignore[override]
        """The entry of ``name`` (a registered one, else the fallback's). An unknown name (None
        included) raises :meth:`unknown`, or gives ``default`` when one is passed."""
        entries = self._loaded()
        if name is not None and name in entries:
            return entries[name]
        made = self.fallback(name) if self.fallback and name is not None else None
        if made is not None:
            return made
        if default is not _MISSING:
            return default  # type: ignore[no-any-return]
        raise self.unknown(name)

    def unknown(self, name: object) -> SslstackError:
        """The one error for a name this registry does not hold: the flag, the name, the
        choices."""
        return self.error(f"{self.flag} {name}: unknown {self.kind}; choose from {self.choices()}")

    def choices(self) -> str:
        """The names people may give, comma-separated (for messages and ``--help``)."""
        return ", ".join([*self.names(), *self.more])

    def names(self) -> list[str]:
        return list(self._loaded())

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __setitem__(self, name: str, entry: T) -> None:
        """``reg[name] = entry`` registers (a taken name is refused, as with :meth:`register`)."""
        self.register(name, entry)

    def __delitem__(self, name: str) -> None:
        """Remove an entry (tests that register a temporary one undo it this way)."""
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._loaded()

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
