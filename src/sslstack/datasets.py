"""Datasets registered in a workspace: the manifest as read, and what each item *is*.

A dataset maps its ids to content hashes (:mod:`sslstack.content`); every reader of vectors
goes through that map (:func:`item_hashes`), so two datasets with the same ids and other files
never see each other's vectors. A dataset's name is the manifest's stem plus a short digest of
its ids *and* their content hashes: the same CSV over the same files maps to the same dataset
every time, and a CSV whose files changed (or another CSV with the same ids) gets its own name
(and its own folds).

Workspaces made before content-named datasets (named by a digest of the ids alone) keep
working: a manifest whose files still hold the content recorded in such a dataset's
``hashes.csv`` keeps its old name, folds and runs.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from .content import content_hashes
from .errors import DataError
from .manifest import Manifest, read_manifest
from .workspace import (
    Workspace,
    atomic_write_json,
    atomic_write_text,
    checked_text,
    read_checked_text,
    read_csv,
    read_derived,
    read_json,
)

ITEMS = "items.csv"  # id,hash of every item: the dataset's map to the store
LEGACY_MEMO = "hashes.csv"  # path,size,mtime_ns,sha1 written by extract before content naming


def _digest(values: Iterable[str]) -> str:
    h = hashlib.sha1()
    for v in values:
        h.update(v.encode("utf-8") + b"\0")
    return h.hexdigest()[:8]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "data"


def dataset_name(manifest: Manifest, hashes: Sequence[str]) -> str:
    """``<stem>-<digest of ids and content hashes>``."""
    pairs = (f"{i}\0{h}" for i, h in zip(manifest.ids, hashes, strict=True))
    return f"{_slug(manifest.name)}-{_digest(pairs)}"


def _legacy_name(manifest: Manifest) -> str:
    return f"{_slug(manifest.name)}-{_digest(manifest.ids)}"


def manifest_hashes(ws: Workspace, manifest: Manifest) -> list[str]:
    """The content hash of every item of ``manifest``, in its order (memoized per workspace).
    A file deleted since it was hashed keeps the hash it had (its vectors stay readable).

    Raises:
        DataError: a file never hashed is missing, or a file is unreadable (named).
    """
    try:
        return content_hashes(ws, manifest.frame["path"].tolist(), gone_ok=True)
    except OSError as e:
        raise DataError(
            f"{manifest.source}: cannot read {e.filename} ({e.strerror}); fix the path or "
            "remove the row"
        ) from None


def _adopt_legacy(ws: Workspace, manifest: Manifest, hashes: Sequence[str]) -> str | None:
    """The name of a dataset registered before content naming that this manifest *is*: same
    ids and paths, and every file still holds the content that dataset recorded."""
    folder = ws.dataset_dir(_legacy_name(manifest))
    if (folder / ITEMS).exists() or not (folder / "manifest.csv").exists():
        return None
    try:
        saved = pd.read_csv(folder / "manifest.csv", dtype=str, keep_default_na=False)
        memo = _legacy_memo(folder)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    paths = manifest.frame["path"].tolist()
    if saved.get("id") is None or saved["id"].tolist() != manifest.ids:
        return None
    if saved.get("path") is None or saved["path"].tolist() != paths:
        return None
    if any(memo.get(p) != h for p, h in zip(paths, hashes, strict=True)):
        return None
    return folder.name


def _legacy_memo(folder: Path) -> dict[str, str]:
    """path -> SHA-1 from a pre-content dataset's ``hashes.csv`` (empty when absent)."""
    path = folder / LEGACY_MEMO
    if not path.exists():
        return {}
    memo: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        parts = line.rsplit(",", 3)
        if len(parts) == 4:
            memo[parts[0]] = parts[3]
    return memo


def register_dataset(ws: Workspace, manifest: Manifest, role: str | None = None) -> str:
    """Record a manifest in the workspace (idempotent) and return the dataset's name.

    Hashes the items' files (memoized: a rerun costs a ``stat`` per file), names the dataset
    by its ids and their content, and writes its map ``items.csv`` (id, hash). Only what
    changed is written, so a rerun on a read-only workspace works: the manifest copy and the
    map when their content differs, ``dataset.json`` when a field other than the last-used
    time differs (the last-used time itself is refreshed at most once a minute).

    Args:
        role: ``train`` or ``test``, for a new dataset (``predict`` registers its data as
            ``test``); an existing dataset keeps its role whatever the command, and a new one
            without ``role`` is ``train`` when it has labels.
            Commands without ``--data`` work on the ``train`` dataset.
    """
    hashes = manifest_hashes(ws, manifest)
    name = _adopt_legacy(ws, manifest, hashes) or dataset_name(manifest, hashes)
    folder = ws.dataset_dir(name)
    meta_path = folder / "dataset.json"
    old = read_derived(meta_path, read_json)  # damaged: set aside, written again from the manifest
    meta = dict(old) if old else {"created": time.time()}
    # a role is how a command uses the data now: it names a new dataset, never changes one
    meta["role"] = meta.get("role") or role or ("train" if manifest.has_labels else "test")
    meta.update(
        name=name,
        source=str(manifest.source),
        items=len(manifest),
        labeled=manifest.has_labels,
        multilabel=manifest.multilabel,
        label_col=manifest.label_col,
        id_col=manifest.id_col,
        ids_digest=_digest(manifest.ids),
    )
    cols = [c for c in manifest.frame.columns if c != "_line"]
    _write_if_changed(folder / "manifest.csv", manifest.frame[cols].to_csv(index=False))
    _write_if_changed(folder / ITEMS, _items_csv(zip(manifest.ids, hashes, strict=True)))
    now = time.time()
    if old is None or _without_used(old) != _without_used(meta):
        atomic_write_json(meta_path, {**meta, "used": now})
    elif now - float(old.get("used", 0)) > _USED_EVERY_S:
        with contextlib.suppress(OSError):  # a read-only workspace keeps the old time
            atomic_write_json(meta_path, {**meta, "used": now})
    return name


_USED_EVERY_S = 60.0


def _parse_items(path: Path) -> dict[str, str]:
    """``items.csv`` as written (checksummed); raises on any damage (see read_derived)."""
    rows = list(csv.reader(io.StringIO(read_checked_text(path))))
    if not rows or rows[0] != ["id", "hash"] or any(len(r) != 2 for r in rows[1:]):
        raise ValueError("not an id,hash table")
    if any(len(h) != 40 or not all(c in "0123456789abcdef" for c in h) for _, h in rows[1:]):
        raise ValueError("a hash is not 40 hex digits")
    return {i: h for i, h in rows[1:]}


def _items_csv(pairs: Iterable[tuple[str, str]]) -> str:
    """``id,hash`` rows as CSV (ids quoted where they need it)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("id", "hash"))
    w.writerows(pairs)
    return checked_text(buf.getvalue())


def _write_if_changed(path: Path, text: str) -> None:
    try:
        same = path.read_text(encoding="utf-8") == text
    except (FileNotFoundError, UnicodeDecodeError):
        same = False
    if not same:
        atomic_write_text(path, text)


def _without_used(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if k != "used"}


def item_hashes(ws: Workspace, dataset: str) -> dict[str, str]:
    """The dataset's map: item id -> content hash, the key of its vectors in every store.

    A dataset registered before content naming has no map yet: it is rebuilt from the hashes
    its extraction recorded (``hashes.csv``), hashing files only where none was recorded, and
    saved.

    Raises:
        DataError: no such dataset, or a file to hash is gone (named).
    """
    folder = ws.dataset_dir(dataset)
    path = folder / ITEMS
    known = read_derived(path, _parse_items)  # damaged: moved aside, rebuilt below
    if known is not None:
        return known
    manifest = load_dataset(ws, dataset)
    memo = _legacy_memo(folder)
    paths = manifest.frame["path"].tolist()
    todo = [p for p in paths if p not in memo]
    try:
        memo.update(zip(todo, content_hashes(ws, todo), strict=True))
    except FileNotFoundError as e:
        raise DataError(
            f"dataset {dataset}: {e.filename} is gone and its content was never recorded; "
            f"run 'sslstack extract --data {manifest.source}' again"
        ) from None
    out = {i: memo[p] for i, p in zip(manifest.ids, paths, strict=True)}
    with contextlib.suppress(OSError):  # a read-only workspace rebuilds it next time
        atomic_write_text(path, _items_csv(out.items()))
    return out


def hashes_of_ids(ws: Workspace, ids: Sequence[str], dataset: str | None = None) -> list[str]:
    """Content hashes of ``ids``: through ``dataset``'s map, or else through every dataset of
    the workspace (an id two datasets map to different content is refused: pass a dataset).

    Raises:
        DataError: an id no dataset knows, or one that is ambiguous (both named).
    """
    if dataset is not None:
        maps = {dataset: item_hashes(ws, dataset)}
    else:
        maps = {m["name"]: item_hashes(ws, m["name"]) for m in list_datasets(ws)}
    out = []
    for i in ids:
        seen = {n: m[i] for n, m in maps.items() if i in m}
        if not seen:
            where = f"dataset {dataset}" if dataset else f"any dataset of {ws.root}"
            raise DataError(
                f"id {i!r} is not in {where}; extract its manifest first ('sslstack extract "
                "--data ...')"
            )
        if len(set(seen.values())) > 1:
            raise DataError(
                f"id {i!r} names different files in datasets {', '.join(sorted(seen))}; "
                "say which dataset (data=/--data)"
            )
        out.append(next(iter(seen.values())))
    return out


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
    saved = _saved_label_col(ws, manifest)
    if not saved or saved == manifest.label_col or saved not in manifest.frame.columns:
        return manifest
    return read_manifest(data, check_files=check_files, label_col=saved)


def _saved_label_col(ws: Workspace, manifest: Manifest) -> str | None:
    """The label column the most recent dataset with this manifest's source and ids was
    registered with (None when there is none)."""
    digest, legacy, source = _digest(manifest.ids), _legacy_name(manifest), str(manifest.source)
    for meta in list_datasets(ws):
        if meta.get("source") == source and (
            meta.get("ids_digest") == digest or meta.get("name") == legacy
        ):
            return meta.get("label_col")
    return None
