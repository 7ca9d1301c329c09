"""Finding stores in a workspace and reading embeddings out of them (the notebook API)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, StoreError
from ..workspace import Workspace
from .key import StoreKey
from .store import Store


def normalize_model(model: str) -> str:
    """Hub ids and built-in names stay as written; an existing local folder or model file
    becomes its absolute path."""
    from ..extract.base import builtin_names

    p = Path(model).expanduser()
    if model in builtin_names():
        return model
    if p.is_dir() or p.is_file() or model.startswith((".", "/", "~")):
        return str(p.resolve())
    return model


def list_stores(workspace: str | os.PathLike[str] | Workspace | None = None) -> list[Store]:
    """Every store of the workspace, oldest first."""
    ws = Workspace.at(workspace)
    if not ws.stores.exists():
        return []
    stores = [Store(p.parent) for p in ws.stores.glob("*/key.json")]
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
    hits = [s for s in stores if s.key.model in (model, norm)]
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


def load_embeddings(
    model: str,
    layer: int | str,
    pool: str = "mean",
    workspace: str | os.PathLike[str] | Workspace | None = None,
    *,
    ids: Sequence[str] | None = None,
    store: str | None = None,
    **settings: Any,
) -> tuple[list[str], np.ndarray]:
    """Embeddings of one layer and pooling: ``(ids, X)`` with ``X`` float32 of shape (n, dim).

    Example:
        >>> ids, X = load_embeddings(model="microsoft/wavlm-large", layer=12, pool="mean",
        ...                          workspace="ws")
    """
    return find_store(model, workspace, store=store, **settings).read(layer, pool, ids)


def export_embeddings(
    model: str,
    layer: int | str,
    pool: str,
    out: str | os.PathLike[str],
    workspace: str | os.PathLike[str] | Workspace | None = None,
    *,
    store: str | None = None,
) -> dict[str, Any]:
    """Write one layer and pooling with ids to ``.npz`` or ``.parquet``."""
    st = find_store(model, workspace, store=store)
    ids, x = st.read(layer, pool)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npz":
        np.savez(out, ids=np.asarray(ids, dtype=str), X=x)
    elif out.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = {"id": pa.array(ids, pa.string())}
        cols.update({f"f{j}": pa.array(x[:, j]) for j in range(x.shape[1])})
        pq.write_table(pa.table(cols), out)
    else:
        raise ConfigError(f"--out {out}: use a .npz or .parquet file name")
    return {"out": str(out), "store": st.path.name, "items": len(ids), "dim": int(x.shape[1])}
