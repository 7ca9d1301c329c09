"""One registry shape for everything looked up by name: encoder families, built-in encoders,
poolings, heads, metrics, splitters, stack methods, calibrators.

A :class:`Registry` is a read-only mapping (``reg[name]``, ``name in reg``, ``list(reg)``) that is
filled by :meth:`Registry.register` (as a decorator or a call), refuses a duplicate name, lists
its names for CLI choices and help, and raises one clear error for an unknown name::

    HEADS: Registry[Head] = Registry("head", flag="HEAD")

    @HEADS.register("logreg")
    class LogRegHead: ...

    HEADS.get("svm")  # ConfigError: HEAD svm: unknown head; choose from logreg, xgb, catboost, lgbm
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar, overload

from .errors import ConfigError, SslstackError

T = TypeVar("T")


class DuplicateNameError(ValueError):
    """A second entry under a name a registry holds already (a programming error)."""


class Registry(Mapping[str, T], Generic[T]):
    """Entries of one kind, by name, in registration order."""

    def __init__(
        self, kind: str, *, flag: str | None = None, error: type[SslstackError] = ConfigError
    ) -> None:
        self.kind, self.flag, self.error = kind, flag or f"--{kind}", error
        self._entries: dict[str, T] = {}

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

    def get(self, name: str, default: Any = ...) -> T:  # type: ignore[override]
        """The entry of ``name``; unknown names raise the registry's error listing the known ones
        (or give ``default`` when one is passed)."""
        if name in self._entries:
            return self._entries[name]
        if default is not ...:
            return default  # type: ignore[no-any-return]
        raise self.error(
            f"{self.flag} {name}: unknown {self.kind}; choose from {', '.join(self.names())}"
        )

    def names(self) -> list[str]:
        return list(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __setitem__(self, name: str, entry: T) -> None:
        """``reg[name] = entry`` registers (a taken name is refused, as with :meth:`register`)."""
        self.register(name, entry)

    def __delitem__(self, name: str) -> None:
        """Remove an entry (tests that register a temporary one undo it this way)."""
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
