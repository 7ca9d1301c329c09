"""Saving a run's fold models whole: into a temporary folder renamed once complete, and a
failed save (a full disk, a library's own error) as one line."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import DiskFullError, RunError
from .cv import save_models
from .heads import Head


def save_models_atomically(
    hd: Head, models: Any, folder: Path, shown: Path | None = None
) -> list[str]:
    """Write the fold models into a temporary folder renamed to ``folder`` once whole: a save
    that fails (a full disk, a library's own error) leaves no half-written models and is one
    line naming the folder (``shown``: the path to name), whichever head wrote them."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    try:
        names = save_models(hd, models, tmp)
        os.replace(tmp, folder)
        return names
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _save_error(hd, shown or folder, e) from None


def _save_error(hd: Head, folder: Path, e: Exception) -> Exception:
    """One line for a failed model save: a full disk as DiskFullError, else what failed."""
    text = f"{e}"
    errno = getattr(e, "errno", None)
    if errno in (28, 122) or "No space left" in text or _low_space(folder):
        return DiskFullError(
            f"{folder}: no space left on device while saving the {hd.name} models; nothing "
            "of the run was kept: free some space (or use another --workspace) and rerun "
            "(the study's trials are kept)"
        )
    if isinstance(e, OSError) and errno is not None:
        return OSError(errno, e.strerror, e.filename or str(folder))
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return RunError(f"{folder}: saving the {hd.name} models failed ({first[:300]})")


def _low_space(folder: Path) -> bool:
    """Whether the file system of ``folder`` (or its nearest existing parent) is nearly full:
    libraries report a full disk in their own words (XGBoost: "FileStream.Write incomplete")."""
    path = folder
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (1 << 20)
