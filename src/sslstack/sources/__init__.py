"""Item sources: what kind of input an item is (audio; a registry keyed by kind).

An encoder declares the kind it takes (``Encoder.input_kind``, ``EncoderSpec.input_kind``); a
manifest's items are of one kind, told by their files' extensions. Adding a kind is one file
with a :class:`Source` subclass, registered here with :func:`register_source`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import ManifestError
from ..registry import Registry
from .audio import AUDIO_EXTENSIONS, AudioSource
from .base import Settings, Source, Stream
from .discover import scan_folder
from .image import ImageSource

SOURCES: Registry[Source] = Registry("item source", flag="--source")
SOURCES.register("audio", AudioSource())
SOURCES.register("image", ImageSource())
DEFAULT_KIND = "audio"  # a manifest whose paths no source claims by extension is audio


def register_source(kind: str) -> Callable[[type[Source]], type[Source]]:
    """Register a :class:`Source` subclass under ``kind`` (a decorator)."""

    def add(cls: type[Source]) -> type[Source]:
        SOURCES.register(kind, cls())
        return cls

    return add


def kind_of(paths: Sequence[str | os.PathLike[str]], where: str | Path) -> str:
    """The one kind of a manifest's item files (by extension; unclaimed names are audio, which
    libsndfile may read whatever the name).

    Raises:
        ManifestError: the paths are of several kinds.
    """
    kinds: dict[str, str] = {}
    for p in paths:
        kind = next((k for k, s in SOURCES.items() if s.claims(p)), DEFAULT_KIND)
        kinds.setdefault(kind, Path(p).name)
    if len(kinds) > 1:
        listed = ", ".join(f"{k} ({v})" for k, v in kinds.items())
        raise ManifestError(
            f"{where}: holds items of several kinds: {listed}; one dataset holds one kind of "
            "item: split it into one manifest per kind"
        )
    return next(iter(kinds), DEFAULT_KIND)


def scan(root: Path) -> tuple[list[Path], Source | None]:
    """The item files under a folder and their source (see :func:`scan_folder`)."""
    return scan_folder(root, list(SOURCES.values()))


def all_extensions() -> list[str]:
    return [e for s in SOURCES.values() for e in s.extensions]


__all__ = [
    "AUDIO_EXTENSIONS",
    "SOURCES",
    "AudioSource",
    "ImageSource",
    "Settings",
    "Source",
    "Stream",
    "all_extensions",
    "kind_of",
    "register_source",
    "scan",
]
