"""The folder scan: which files of a folder are items, and of which source.

Symbolic links are followed, to files and to folders (a class folder that links to data kept
elsewhere is as good as a real one), with loop protection: a link to a folder that encloses it
on the walked path is refused in one line, as is a broken link whose name a source claims.
Nothing under the folder is dropped without a word.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ManifestError
from .base import Source


def scan_folder(root: Path, sources: list[Source]) -> tuple[list[Path], Source | None]:
    """Files under ``root`` (sorted) claimed by one of ``sources``, and that source.

    Raises:
        ManifestError: a symbolic-link loop, a broken link to an item, or items of two kinds.
    """
    files: list[Path] = []
    real_root = os.path.realpath(root)
    chain: dict[str, tuple[str, ...]] = {str(root): (real_root,)}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        above = chain[dirpath]
        for d in sorted(dirnames):
            full = os.path.join(dirpath, d)
            real = os.path.realpath(full)
            if real in above:
                raise ManifestError(
                    f"{full}: a symbolic link to {real}, a folder that encloses it (a loop); "
                    "remove the link or point it at the data itself"
                )
            chain[full] = (*above, real)
        for f in filenames:
            full = os.path.join(dirpath, f)
            if not any(s.claims(f) for s in sources):
                continue
            if not os.path.exists(full):
                raise ManifestError(
                    f"{full}: a broken symbolic link (to {os.readlink(full)}); fix or remove it"
                )
            files.append(Path(full))
    files.sort()
    kinds = {s.kind: s for f in files for s in sources if s.claims(f)}
    if len(kinds) > 1:
        raise ManifestError(f"{root}: {_mixed(files, sources)}")
    return files, next(iter(kinds.values()), None)


def _mixed(files: list[Path], sources: list[Source]) -> str:
    examples: dict[str, str] = {}
    for f in files:
        for s in sources:
            if s.claims(f):
                examples.setdefault(s.kind, f.name)
    listed = ", ".join(f"{k} ({v})" for k, v in examples.items())
    return f"holds items of several kinds: {listed}; one dataset holds one kind of item"
