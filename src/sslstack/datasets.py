"""Datasets registered in a workspace: the manifest as read, kept so later stages need no --data.

A dataset's name is the manifest's stem plus a short digest of its ids, so the same CSV maps to
the same dataset every time and a changed one gets a new name (and new folds).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from pathlib import Path

from .errors import DataError
from .manifest import Manifest, read_manifest
from .workspace import (
    Workspace,
    atomic_write_json,
    atomic_write_text,
    read_csv,
    read_derived,
    read_json,
    read_text,
)


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

    Only what changed is written, so a rerun on a read-only workspace works: the manifest copy
    when its content differs, ``dataset.json`` when a field other than the last-used time
    differs (the last-used time itself is refreshed when it can be, at most once a minute).

    Args:
        role: ``train`` or ``test``. ``predict`` registers its data as ``test``; otherwise an
            existing dataset keeps its role and a new one is ``train`` when it has labels.
            Commands without ``--data`` work on the ``train`` dataset.
    """
    name = dataset_name(manifest)
    folder = ws.dataset_dir(name)
    meta_path = folder / "dataset.json"
    old = read_derived(meta_path, read_json)  # damaged: set aside, written again from the manifest
    meta = dict(old) if old else {"created": time.time()}
    meta["role"] = role or meta.get("role") or ("train" if manifest.has_labels else "test")
    meta.update(
        name=name,
        source=str(manifest.source),
        items=len(manifest),
        labeled=manifest.has_labels,
        multilabel=manifest.multilabel,
        label_col=manifest.label_col,
        id_col=manifest.id_col,
    )
    cols = [c for c in manifest.frame.columns if c != "_line"]
    text = manifest.frame[cols].to_csv(index=False)
    csv_path = folder / "manifest.csv"
    if not csv_path.exists() or _text_or_none(csv_path) != text:  # damaged: written again
        atomic_write_text(csv_path, text)
    now = time.time()
    if old is None or _without_used(old) != _without_used(meta):
        atomic_write_json(meta_path, {**meta, "used": now})
    elif now - float(old.get("used", 0)) > _USED_EVERY_S:
        with contextlib.suppress(OSError):  # a read-only workspace keeps the old time
            atomic_write_json(meta_path, {**meta, "used": now})
    return name


_USED_EVERY_S = 60.0


def _text_or_none(path: Path) -> str | None:
    try:
        return read_text(path)
    except DataError:
        return None


def _without_used(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if k != "used"}


def list_datasets(ws: Workspace) -> list[dict]:
    if not ws.datasets.exists():
        return []
    out = [m for p in ws.datasets.glob("*/dataset.json") if (m := read_derived(p, read_json))]
    return sorted(out, key=lambda m: m.get("used", 0), reverse=True)


def load_dataset(ws: Workspace, name: str) -> Manifest:
    folder = ws.dataset_dir(name)
    if not (folder / "manifest.csv").exists():
        known = ", ".join(m["name"] for m in list_datasets(ws)) or "none"
        raise DataError(f"no dataset '{name}' in workspace {ws.root} (known: {known})")
    frame = read_csv(folder / "manifest.csv", dtype=str, keep_default_na=False)
    meta = read_derived(folder / "dataset.json", read_json) or {}  # damaged: rewritten by --data
    return Manifest(
        frame=frame,
        source=Path(meta.get("source") or folder / "manifest.csv"),
        name=name,
        label_col=meta.get("label_col", "label" if "label" in frame else None),
        id_col=meta.get("id_col"),
    )


def resolve_dataset(
    ws: Workspace,
    data: str | os.PathLike[str] | None = None,
    *,
    labeled: bool = True,
    check_files: bool = False,
    label_col: str | None = None,
) -> tuple[str, Manifest]:
    """The dataset a command works on: ``data`` when given (a CSV/folder or a dataset name),
    else the only labeled dataset of the workspace (the most recent one used, if several share
    its source). A CSV read again keeps the label column it was registered with (``extract
    --label-col``) unless ``label_col`` names another.

    Raises:
        DataError: no dataset, or several that cannot be told apart.
    """
    if data is not None:
        if not Path(data).exists() and ws.dataset_dir(str(data)).exists():
            return str(data), load_dataset(ws, str(data))
        manifest = read_dataset_manifest(ws, data, check_files=check_files, label_col=label_col)
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


def read_dataset_manifest(
    ws: Workspace,
    data: str | os.PathLike[str],
    *,
    check_files: bool = True,
    label_col: str | None = None,
) -> Manifest:
    """Read a manifest CSV or folder; without ``label_col``, a CSV whose dataset was registered
    with ``--label-col`` is read with that column again (so later commands need not repeat it).
    """
    manifest = read_manifest(data, check_files=check_files, label_col=label_col)
    if label_col is not None:
        return manifest
    meta_path = ws.dataset_dir(dataset_name(manifest)) / "dataset.json"
    if not meta_path.exists():
        return manifest
    saved = (read_derived(meta_path, read_json) or {}).get("label_col")
    if not saved or saved == manifest.label_col or saved not in manifest.frame.columns:
        return manifest
    return read_manifest(data, check_files=check_files, label_col=saved)


def foreign_items(
    ws: Workspace, dataset: str, manifest: Manifest, stored: dict[str, str]
) -> list[str]:
    """Ids whose stored vectors were computed from other audio than this dataset's file.

    Two datasets can share an id (the same relative path in two folders, or the same value in
    their ``id`` columns); extracting one replaces the other's vectors in a shared store. The
    audio hashes ``extract`` memoizes per dataset (``hashes.csv``) tell them apart. Items
    without a memo entry are not judged.

    Args:
        stored: the store's ``id -> audio hash`` (:meth:`Store.hashes`).
    """
    from .extract.plan import read_hash_memo

    got = read_derived(ws.dataset_dir(dataset) / "hashes.csv", read_hash_memo)
    memo = {p: v[2] for p, v in (got or {}).items()}  # damaged: set aside (extract rebuilds it)
    return [
        i
        for i, path in zip(manifest.ids, manifest.frame["path"], strict=True)
        if i in stored and path in memo and memo[path] != stored[i]
    ]
