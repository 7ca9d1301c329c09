"""The workspace: one folder holding every store, dataset, fold assignment, run and study.

Layout::

    <workspace>/
      stores/<encoder-slug>-<digest>/     embedding stores (see sslstack.cache)
      datasets/<name>/manifest.csv        the manifest as read (id, path, label, group, fold, …)
      datasets/<name>/dataset.json        its kind (train/test), task, source, created
      datasets/<name>/folds.csv           the one fold assignment of that dataset (id, fold)
      datasets/<name>/folds.json          how the folds were made
      runs/<run-id>/                      fitted heads and stacks (run.json, oof.csv, models/)
      studies/                            Optuna storage (journal files)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import DamagedFileError, SslstackWarning

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")
CHECKSUM_KEY = "_sha256"  # a JSON object's own checksum (over the rest of it, canonical form)
RESTORE = "restore it from a backup, or move it away and redo the step that wrote it"

DEFAULT_WORKSPACE = ".sslstack"
ENV_VAR = "SSLSTACK_WORKSPACE"


def resolve_workspace(workspace: str | os.PathLike[str] | None = None) -> Path:
    """The workspace folder: the argument, else ``$SSLSTACK_WORKSPACE``, else ``./.sslstack``."""
    if workspace is None or str(workspace) == "":
        workspace = os.environ.get(ENV_VAR) or DEFAULT_WORKSPACE
    return Path(workspace).expanduser().resolve()


@dataclass(frozen=True)
class Workspace:
    """Paths of one workspace. Creating the object creates nothing on disk."""

    root: Path

    @classmethod
    def at(cls, workspace: str | os.PathLike[str] | Workspace | None = None) -> Workspace:
        if isinstance(workspace, Workspace):
            return workspace
        return cls(resolve_workspace(workspace))

    @property
    def stores(self) -> Path:
        return self.root / "stores"

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def studies(self) -> Path:
        return self.root / "studies"

    def dataset_dir(self, name: str) -> Path:
        return self.datasets / name

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (no race with threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _plain_open_mode(path: Path) -> int:
    """The mode ``open(path, "w")`` would leave: an existing file's, else 0666 less the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one.

    The file gets the mode a plain ``open`` would give it (not ``mkstemp``'s 0600).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:  # name the file being written, not the temporary one
        raise OSError(e.errno, e.strerror, str(path)) from e
    try:
        os.fchmod(fd, _plain_open_mode(path))
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:  # name the file (disk full, …)
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any, *, checksum: bool = False) -> None:
    """Write ``obj`` as JSON atomically; ``checksum`` adds its own SHA-256 (``_sha256``), which
    :func:`read_json` checks, so a flipped byte that still parses is not read as a value."""
    if checksum:
        obj = with_checksum(obj)
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def _canonical_sha256(obj: dict[str, Any]) -> str:
    body = {k: v for k, v in obj.items() if k != CHECKSUM_KEY}
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def with_checksum(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` (as JSON would read it back) with its ``_sha256`` field set."""
    plain = json.loads(json.dumps(obj, default=str))
    return {**plain, CHECKSUM_KEY: _canonical_sha256(plain)}


# -- the one reader -------------------------------------------------------------------------
# Every workspace file is read through these: a file that cannot be what it should be is a
# DamagedFileError naming it and saying what to do, never a traceback from a parser.


def read_bytes(path: Path) -> bytes:
    """The file's bytes (OS errors name the file)."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        if e.filename is None:
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def read_text(path: Path, *, advice: str = RESTORE) -> str:
    """The file as UTF-8 text.

    Raises:
        DamagedFileError: bytes that are not UTF-8.
    """
    raw = read_bytes(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        what = f"damaged: byte 0x{raw[e.start]:02x} at offset {e.start} is not UTF-8 text"
        raise DamagedFileError(path, what, advice) from None


def read_json(path: Path, *, advice: str = RESTORE, checksum: bool = False) -> Any:
    """A JSON file; its ``_sha256`` is checked when it has one (required with ``checksum``).

    Raises:
        DamagedFileError: not UTF-8, not JSON, or a checksum that does not match.
    """
    text = read_text(path, advice=advice)
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise DamagedFileError(path, f"damaged: not valid JSON ({e})", advice) from None
    if isinstance(obj, dict) and CHECKSUM_KEY in obj:
        if obj[CHECKSUM_KEY] != _canonical_sha256(obj):
            raise DamagedFileError(path, "damaged: its content differs from its checksum", advice)
    elif checksum:
        raise DamagedFileError(path, "damaged: its checksum is missing", advice)
    return obj


def read_csv(path: Path, *, advice: str = RESTORE, **kwargs: Any) -> pd.DataFrame:
    """A CSV file as a DataFrame (``kwargs`` go to ``pandas.read_csv``).

    Raises:
        DamagedFileError: not UTF-8, or not a CSV pandas can parse.
    """
    import io

    import pandas as pd

    text = read_text(path, advice=advice)
    try:
        return pd.read_csv(io.StringIO(text), **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DamagedFileError(path, f"damaged: not a readable CSV ({first})", advice) from None


_TRAILER = "#sha256:"


def checked_text(text: str) -> str:
    """``text`` with a last line holding its SHA-256, which :func:`read_checked_text` checks
    (for text files whose every byte is a value: memos of hashes, lists)."""
    body = text if text.endswith("\n") else text + "\n"
    return f"{body}{_TRAILER}{hashlib.sha256(body.encode('utf-8')).hexdigest()}\n"


def read_checked_text(path: Path, *, advice: str = RESTORE) -> str:
    """The text written by :func:`checked_text`, checked (a file without the last line, from
    before checksums, is returned as it is).

    Raises:
        DamagedFileError: not UTF-8, or a checksum that does not match.
    """
    text = read_text(path, advice=advice)
    body, sep, digest = text.rpartition(_TRAILER)
    if not sep:
        return text
    if hashlib.sha256(body.encode("utf-8")).hexdigest() != digest.strip():
        raise DamagedFileError(path, "damaged: its content differs from its checksum", advice)
    return body


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def quarantine(path: Path, into: Path | None = None) -> Path | None:
    """Move a damaged file or folder aside (``<name>.damaged-<time>``, in ``into`` or beside it)
    so nothing reads it again; return where it went (None: another process moved it first)."""
    folder = into if into is not None else path.parent
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = folder / f"{path.name}.damaged-{stamp}-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    except FileNotFoundError:
        return None
    return target


def read_derived(path: Path, parse: Callable[[Path], T]) -> T | None:
    """Read a derived file (a memo, an index: something sslstack can compute again).

    A damaged one (``parse`` raises DamagedFileError, or a ValueError, KeyError, IndexError or
    TypeError on its content) is moved aside with one warning and None is returned, as for a
    missing file, so the caller rebuilds it; it never blocks the workspace.
    """
    if not path.exists():
        return None
    try:
        return parse(path)
    except (DamagedFileError, ValueError, KeyError, IndexError, TypeError) as e:
        why = e.what if isinstance(e, DamagedFileError) else f"damaged ({e})"
        moved = quarantine(path)
        where = f"moved to {moved.name}" if moved else "moved aside by another process"
        warnings.warn(
            f"{path}: {why}; it is derived data: {where}, and it is rebuilt",
            SslstackWarning,
            stacklevel=2,
        )
        return None


def confined(root: Path, name: str) -> Path:
    """``root / name`` when ``name`` is a plain relative path that stays inside ``root`` (links
    resolved); anything else (absolute, ``..``, a link out) is refused.

    Raises:
        DamagedFileError: naming ``root`` and the entry.
    """
    p = Path(name)
    inside = not p.is_absolute() and ".." not in p.parts and str(name).strip() not in ("", ".")
    target = root / p
    if inside:
        with contextlib.suppress(OSError):
            inside = target.resolve().is_relative_to(root.resolve())
    if not inside:
        raise DamagedFileError(
            root,
            f"refused the entry {str(name)!r}: a run's files must stay inside its folder",
            "the run record was edited; refit the run (or remove its folder)",
        )
    return target


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created), held for the block; waits for other holders."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one we may not signal still counts): how a
    store's part writers, a study's trial claims and a run's reservation tell a holder that is
    gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True
