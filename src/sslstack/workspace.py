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
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
