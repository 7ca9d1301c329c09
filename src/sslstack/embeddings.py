"""Finding stores in a workspace and reading a dataset's embeddings out of them (the notebook
API). This module knows what the store does not: datasets (whose ids map to the content hashes
the store is keyed by), runs (which read stores) and encoders (how ``--model`` names a store).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from .cache import FeatureChoice, FeatureReader, Store, StoreKey
from .cache.leases import live_writers
from .errors import ConfigError, StoreError, StoreLockedError
from .workspace import Workspace


def normalize_model(model: str) -> str:
    """Hub ids and built-in names stay as written; an existing local folder or model file
    becomes its absolute path."""
    from .extract.resolve import builtin_names

    p = Path(model).expanduser()
    if model in builtin_names():
        return model
    if p.is_dir() or p.is_file() or model.startswith((".", "/", "~")):
        return str(p.resolve())
    return model


def _fingerprint(model: str) -> str | None:
    """The store-key model of a local folder or model file (its content fingerprint: a copy
    elsewhere shares its stores); None for hub ids, built-ins and unreadable paths."""
    p = Path(model).expanduser()
    if not (p.is_dir() or p.is_file()):
        return None
    from .errors import EncoderError
    from .extract.resolve import resolve_encoder

    try:
        return resolve_encoder(str(p)).revision
    except EncoderError:
        return None


def store_model(store: Store) -> str:
    """What to pass as ``--model`` to extract more items into ``store``: its key's model, or
    for a local model (keyed by its fingerprint) the path it was last extracted from."""
    key = store.key
    if key.model == key.revision and store.provenance.get("model"):
        return str(store.provenance["model"])
    return key.model


def list_stores(workspace: str | os.PathLike[str] | Workspace | None = None) -> list[Store]:
    """Every store of the workspace, oldest first."""
    ws = Workspace.at(workspace)
    if not ws.stores.exists():
        return []
    stores = [
        Store(p.parent) for p in ws.stores.glob("*/key.json") if not p.parent.name.startswith(".")
    ]
    return sorted(stores, key=lambda s: (s.path / "key.json").stat().st_mtime)


def find_store(
    model: str,
    workspace: str | os.PathLike[str] | Workspace | None = None,
    *,
    store: str | None = None,
    **settings: Any,
) -> Store:
    """The one store of ``model`` matching ``settings`` (any StoreKey field, e.g. ``window=10``).

    Raises:
        StoreError: no store, or several that the settings do not tell apart (all are listed).
    """
    ws = Workspace.at(workspace)
    stores = list_stores(ws)
    if store is not None:
        hits = [s for s in stores if s.path.name == store or s.path.name.endswith(store)]
        if len(hits) == 1:
            return hits[0]
        raise StoreError(f"no store named '{store}' in {ws.stores}")
    key_fields = {f.name for f in fields(StoreKey)}
    unknown = sorted(set(settings) - key_fields)
    if unknown:
        raise ConfigError(
            f"unknown store setting(s) {', '.join(unknown)}; use {', '.join(sorted(key_fields))}"
        )
    norm = normalize_model(model)
    names = {model, norm}
    if Path(norm).is_absolute():
        names.add(_fingerprint(norm) or norm)
    hits = [s for s in stores if s.key.model in names]
    for name, value in settings.items():
        if value is None:
            continue
        if name == "pools":
            value = tuple(value)
        hits = [
            s
            for s in hits
            if getattr(s.key, name) == value or (name == "pools" and set(value) <= set(s.key.pools))
        ]
    if not hits:
        known = sorted({s.key.model for s in stores})
        raise StoreError(
            f"no embeddings of '{model}' in {ws.stores} (stores hold: "
            f"{', '.join(known) or 'nothing yet'}); run 'sslstack extract --model {model}' first"
        )
    if len(hits) > 1 and (current := _current_layout(hits)) is not None:
        return current
    if len(hits) > 1:
        rows = "; ".join(
            f"{s.path.name} ({', '.join(d for d in s.key.differences(hits[0].key)) or 'same key'})"
            for s in hits
        )
        raise StoreError(
            f"several stores of '{model}' match; pick one with store=/--store or a setting "
            f"such as window=/max_seconds=: {rows}"
        )
    return hits[0]


def _current_layout(hits: list[Store]) -> Store | None:
    """Of stores that differ only in ``chunk``, the one ``extract`` writes now (chunked).

    Stores made before long inputs were streamed have no ``chunk`` in their key; extracting the
    same model again makes a chunked store beside the old one, which then answers.
    """
    if len({dataclasses.replace(s.key, chunk=None) for s in hits}) != 1:
        return None
    chunked = [s for s in hits if s.key.chunk is not None]
    return chunked[0] if len(chunked) == 1 else None


def load_embeddings(
    model: str,
    layer: int | str,
    pool: str = "mean",
    workspace: str | os.PathLike[str] | Workspace | None = None,
    *,
    data: str | os.PathLike[str] | None = None,
    ids: Sequence[str] | None = None,
    store: str | None = None,
    **settings: Any,
) -> tuple[list[str], np.ndarray]:
    """Embeddings of one layer and pooling: ``(ids, X)`` with ``X`` float32 of shape (n, dim).

    Vectors are read through a dataset's map from ids to content hashes, so two datasets with
    the same ids get their own vectors.

    Args:
        data: the dataset (manifest, folder or dataset name) whose items to read, in its order.
        ids: the items to read (of ``data`` when given, else of whichever dataset of the
            workspace knows them). Without ``data`` and ``ids``: every stored item, named by
            the first id its content was stored under.

    Example:
        >>> ids, X = load_embeddings(model="microsoft/wavlm-large", layer=12, pool="mean",
        ...                          workspace="ws", data="train.csv")
    """
    ws = Workspace.at(workspace)
    st = find_store(model, ws, store=store, **settings)
    if data is None and ids is None:
        keys, x = st.read(layer, pool)
        names = st.names()
        return [names[k] for k in keys], x
    from .datasets import hashes_of_ids, item_hashes, resolve_dataset

    dataset = None
    if data is not None:
        dataset = resolve_dataset(ws, data, labeled=False)[0]
        ids = list(item_hashes(ws, dataset)) if ids is None else ids
    assert ids is not None  # both None returned above
    keys = hashes_of_ids(ws, ids, dataset)
    st.check_keys(keys, names=ids)
    return list(ids), st.read(layer, pool, keys)[1]


def export_embeddings(
    model: str,
    layer: int | str,
    pool: str,
    out: str | os.PathLike[str],
    workspace: str | os.PathLike[str] | Workspace | None = None,
    *,
    store: str | None = None,
    data: str | os.PathLike[str] | None = None,
    all_items: bool = False,
) -> dict[str, Any]:
    """Write one feature matrix with ids (and labels) to ``.npz`` or ``.parquet``.

    Args:
        layer: a layer (``12``, ``"final"``) or a layer choice as heads see it (``"6..12"``,
            ``"4+8+12"``).
        pool: a pooling or a concatenation as heads see it (``"mean+std+max"``).
        data: the dataset whose items to write (a manifest, folder or dataset name; default:
            the workspace's only dataset). ``all_items`` writes every item of the store instead.

    Raises:
        ConfigError: an unknown file type. StoreError: an unknown layer or pooling, or none of
            the dataset's items in the store.
    """
    out = Path(out)
    if out.suffix not in (".npz", ".parquet"):
        raise ConfigError(f"--out {out}: use a .npz or .parquet file name")
    ws = Workspace.at(workspace)
    st = find_store(model, ws, store=store)
    choice = _choice(st, layer, pool)
    ids, keys, labels, missing, dataset = _export_items(ws, st, data, all_items)
    x = FeatureReader(st, keys).matrix(choice)
    _write_matrix(out, ids, labels, x)
    return {
        "out": str(out),
        "store": st.path.name,
        "dataset": dataset,
        "layer": choice.layer,
        "pool": choice.pool,
        "items": len(ids),
        "missing": missing,
        "dim": int(x.shape[1]),
    }


def _choice(st: Store, layer: int | str, pool: str) -> FeatureChoice:
    """A checked feature choice: every layer and pooling it names is in the store."""
    choice = FeatureChoice(str(layer), pool)
    for layers, p in choice.blocks():
        st.check_pool(p)
        for la in layers:
            st.layer_index(int(la) if la.lstrip("-").isdigit() else la)
    if str(layer).lstrip("-").isdigit() and int(layer) < 0:  # -1: the last layer, by name
        choice = FeatureChoice(st.layer_names[st.layer_index(int(layer))], pool)
    return choice


def _export_items(
    ws: Workspace, st: Store, data: Any, all_items: bool
) -> tuple[list[str], list[str], list[str] | None, int, str | None]:
    """Ids to export, their content hashes, labels (None without), how many lack embeddings,
    the dataset."""
    if all_items:
        names = st.names()
        keys = st.keys()
        return [names[k] for k in keys], keys, None, 0, None
    from .datasets import item_hashes, resolve_dataset

    dataset, manifest = resolve_dataset(ws, data, labeled=False)
    hashes = item_hashes(ws, dataset)
    have = st.index
    keep = [n for n, i in enumerate(manifest.ids) if hashes[i] in have]
    if not keep:
        raise StoreError(
            f"none of the {len(manifest)} item(s) of dataset {dataset} are in store "
            f"{st.path.name}; run 'sslstack extract --data {manifest.source} --model "
            f"{store_model(st)}' first, or pass --all-items for the store's own items"
        )
    ids = [manifest.ids[n] for n in keep]
    labels = [str(manifest.frame["label"].iloc[n]) for n in keep] if manifest.has_labels else None
    return ids, [hashes[i] for i in ids], labels, len(manifest) - len(keep), dataset


def _write_matrix(out: Path, ids: list[str], labels: list[str] | None, x: np.ndarray) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npz":
        arrays: dict[str, Any] = {"ids": np.asarray(ids, dtype=str), "X": x}
        if labels is not None:
            arrays["labels"] = np.asarray(labels, dtype=str)
        np.savez(out, **arrays)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {"id": pa.array(ids, pa.string())}
    if labels is not None:
        cols["label"] = pa.array(labels, pa.string())
    cols.update({f"f{j}": pa.array(x[:, j]) for j in range(x.shape[1])})
    pq.write_table(pa.table(cols), out)


def remove_store(
    name: str,
    workspace: str | os.PathLike[str] | Workspace | None = None,
    *,
    dry_run: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Delete a store folder (``cache rm``); with ``dry_run`` only say what would go.

    A store that runs read (their ``predict`` needs it) is kept unless ``force``; a store
    being written is never removed.

    Returns:
        ``{"store", "path", "items", "bytes", "runs", "removed"}``.

    Raises:
        StoreError: no such store, runs read it (without ``force``), or a writer holds it.
    """
    ws = Workspace.at(workspace)
    stores = list_stores(ws)
    hits = [s for s in stores if s.path.name == name] or [
        s for s in stores if s.path.name.endswith(name) or s.path.name.startswith(name)
    ]
    if len(hits) != 1:
        known = ", ".join(s.path.name for s in stores) or "none"
        what = "is ambiguous" if hits else "does not exist"
        raise StoreError(f"store '{name}' {what} in {ws.stores} (stores: {known})")
    st = hits[0]
    users = _runs_reading(ws, st.path.name)
    info = {
        "store": st.path.name,
        "path": str(st.path),
        "items": len(st.index),
        "bytes": sum(p.stat().st_size for p in st.path.rglob("*") if p.is_file()),
        "runs": users,
        "removed": False,
    }
    writing = live_writers(st.path)
    if writing:
        who = writing[0]
        raise StoreLockedError(
            f"{st.path.name} is being written by pid {who.get('pid')} on {who.get('host')} "
            f"({who.get('command')}); wait for it to finish"
        )
    if users and not force:
        raise StoreError(
            f"store {st.path.name} is read by run(s) {', '.join(users[:10])}, which predict "
            "needs it for; remove those runs first, or pass --force to remove it anyway"
        )
    if not dry_run:
        _delete_locked(st)
        info["removed"] = True
    return info


def _runs_reading(ws: Workspace, store: str) -> list[str]:
    from .runs import list_runs

    return [r.id for r in list_runs(ws) if any(f.store == store for f in r.record.features)]


def _delete_locked(st: Store) -> None:
    """Rename the folder out of sight under the store's write lock, then delete it."""
    import fcntl
    import shutil

    with open(st.path / "store.lock", "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreLockedError(
                f"{st.path.name} is being written by another process; wait for it to finish"
            ) from None
        gone = st.path.with_name(f".rm-{st.path.name}-{os.getpid()}")
        os.replace(st.path, gone)
    shutil.rmtree(gone)
