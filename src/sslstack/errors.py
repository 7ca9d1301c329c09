"""One exception hierarchy: every error a user can cause is an :class:`SslstackError`.

The CLI turns these into one-line messages and an exit code; tracebacks only with ``--debug``.
"""

from __future__ import annotations


class SslstackError(Exception):
    """Base class of every error sslstack raises on purpose."""

    exit_code = 2


class ManifestError(SslstackError):
    """The manifest (CSV or folder) is unusable: missing column, missing files, duplicates."""


class AudioError(SslstackError):
    """An audio file cannot be decoded, is empty, or is corrupt."""


class EncoderError(SslstackError):
    """The encoder cannot be resolved or loaded (unknown family, missing weights, …)."""


class StoreError(SslstackError):
    """An embedding store is missing, locked by another process, or disagrees with its key."""


class StoreLockedError(StoreError):
    """Another process holds the store's write lock."""


class ConfigError(SslstackError):
    """A parameter or flag has a value that cannot work."""


class DataError(SslstackError):
    """Labels, ids, folds or predictions do not agree with each other."""


class RunError(SslstackError):
    """A run or study in the workspace is missing or inconsistent."""


class DamagedFileError(DataError):
    """A workspace file cannot be read as what it should be (bad bytes, bad checksum, bad
    value): the message names the file and what to do. ``path`` is the file."""

    def __init__(self, path: object, what: str, advice: str) -> None:
        self.path = str(path)
        self.what = what
        self.advice = advice
        super().__init__(f"{path}: {what}; {advice}")


class MissingDependencyError(SslstackError):
    """An optional dependency is needed for what was asked."""

    def __init__(self, package: str, purpose: str, extra: str | None = None) -> None:
        hint = f"pip install 'sslstack[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{purpose} needs the package '{package}': {hint}")


class DiskFullError(SslstackError):
    """A write failed for lack of space (or quota): nothing half-written is left behind."""

    exit_code = 1


class SslstackWarning(UserWarning):
    """A fault that sslstack healed or worked around; the CLI prints it as one line."""


_OS_ADVICE = {
    28: "no space left on device; free some space (or use another --workspace) and rerun",
    122: "disk quota exceeded; free some space (or use another --workspace) and rerun",
    27: "file too large for this file system or limit; free space or raise the limit",
    30: "the file system is read-only; use a writable --workspace (or $SSLSTACK_WORKSPACE)",
    13: "permission denied; use a folder you can write to (--workspace), or fix its permissions",
    1: "operation not permitted; use a folder you can write to (--workspace)",
}


def describe_os_error(e: OSError) -> str:
    """One line for an operating-system error: the path, what happened and what to do."""
    path = e.filename if e.filename is not None else "?"
    what = e.strerror or type(e).__name__
    advice = _OS_ADVICE.get(e.errno or 0)
    return f"{path}: {what}" + (f" — {advice}" if advice else "")


def os_error_line(e: OSError) -> str | None:
    """One line for an OS error a user can act on (disk full, quota, read-only, permission):
    the path, what happened, what to do. None for other errors (they stay tracebacks)."""
    return describe_os_error(e) if (e.errno or -1) in _OS_ADVICE else None
