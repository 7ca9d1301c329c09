"""Datasets registered in a workspace: the manifest as read, kept so later stages need no --data.

A dataset's name is the manifest's stem plus a short digest of its ids, so the same CSV maps to
the same dataset every time and a changed one gets a new name (and new folds).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path

import pandas as pd

from .errors import DataError
from .manifest import Manifest, read_manifest
from .workspace import Workspace, atomic_write_json, atomic_write_text, read_json


def _digest_ids(ids: list[str]) -> str:
    h = hashlib.sha1()
    for i in ids:
        h.update(i.encode("utf-8") + b"\0")
    return h.hexdigest()[:8]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "data"


def dataset_name(manifest: Manifest) -> str:
    return f"{_slug(manifest.name)}-{_digest_ids(manifest.ids)}"


def register_dataset(ws: Workspace, manifest: Manifest, role: str | None = None) -> str:
    """Record a manifest in the workspace (idempotent) and return the dataset's name.

    Args:
        role: ``train`` or ``test``. ``predict`` registers its data as ``test``; otherwise an
            existing dataset keeps its role and a new one is ``train`` when it has labels.
            Commands without ``--data`` work on the ``train`` dataset.
    """
    name = dataset_name(manifest)
    folder = ws.dataset_dir(name)
    meta_path = folder / "dataset.json"
    meta = read_json(meta_path) if meta_path.exists() else {"created": time.time()}
    meta["role"] = role or meta.get("role") or ("train" if manifest.has_labels else "test")
    meta.update(
        name=name,
        source=str(manifest.source),
        items=len(manifest),
        labeled=manifest.has_labels,
        multilabel=manifest.multilabel,
        used=time.time(),
    )
    cols = [c for c in manifest.frame.columns if c != "_line"]
    atomic_write_text(folder / "manifest.csv", manifest.frame[cols].to_csv(index=False))
    atomic_write_json(meta_path, meta)
    return name


def list_datasets(ws: Workspace) -> list[dict]:
    if not ws.datasets.exists():
        return []
    out = [read_json(p) for p in ws.datasets.glob("*/dataset.json")]
    return sorted(out, key=lambda m: m.get("used", 0), reverse=True)


def load_dataset(ws: Workspace, name: str) -> Manifest:
    folder = ws.dataset_dir(name)
    if not (folder / "manifest.csv").exists():
        known = ", ".join(m["name"] for m in list_datasets(ws)) or "none"
        raise DataError(f"no dataset '{name}' in workspace {ws.root} (known: {known})")
    frame = pd.read_csv(folder / "manifest.csv", dtype=str, keep_default_na=False)
    meta = read_json(folder / "dataset.json")
    return Manifest(frame=frame, source=Path(meta["source"]), name=name)


def resolve_dataset(
    ws: Workspace,
    data: str | os.PathLike[str] | None = None,
    *,
    labeled: bool = True,
    check_files: bool = False,
) -> tuple[str, Manifest]:
    """The dataset a command works on: ``data`` when given (a CSV/folder or a dataset name),
    else the only labeled dataset of the workspace (the most recent one used, if several share
    its source).

    Raises:
        DataError: no dataset, or several that cannot be told apart.
    """
    if data is not None:
        if not Path(data).exists() and ws.dataset_dir(str(data)).exists():
            return str(data), load_dataset(ws, str(data))
        manifest = read_manifest(data, check_files=check_files)
        return register_dataset(ws, manifest), manifest
    known = [
        m
        for m in list_datasets(ws)
        if not labeled or (m.get("labeled") and m.get("role", "train") == "train")
    ]
    if not known:
        raise DataError(
            f"workspace {ws.root} has no {'labeled ' if labeled else ''}dataset yet; "
            "run 'sslstack extract --data train.csv' first or pass --data"
        )
    sources = {m["source"] for m in known}
    if len(sources) > 1:
        names = ", ".join(f"{m['name']} ({m['source']})" for m in known)
        raise DataError(
            f"workspace {ws.root} holds several datasets; pick one with --data: {names}"
        )
    return known[0]["name"], load_dataset(ws, known[0]["name"])
