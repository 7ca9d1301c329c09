"""``check``: leakage, shift and label problems between a training and a test set, found from
what the workspace already holds (content hashes, cached vectors, runs), training nothing heavy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..content import duplicate_sets, item_hashes
from ..errors import ConfigError
from ..manifest import Manifest
from ..workspace import Workspace, atomic_write_json
from .labels import label_problems
from .near import nearest
from .shift import adversarial

DEFAULT_THRESHOLD = 0.95
MAX_LISTED = 10
MIN_ITEMS = 10  # per set, for a store to be used for near duplicates and shift


@dataclass(frozen=True)
class _Side:
    """One of the two sets: its manifest and its items' content hashes (id -> hash)."""

    manifest: Manifest
    hashes: dict[str, str]

    def held(self, index: Any) -> list[str]:
        """The ids whose content a store holds (``index``: content hash -> row)."""
        return [i for i in self.manifest.ids if self.hashes.get(i) in index]

    def keys(self, ids: list[str]) -> list[str]:
        return [self.hashes[i] for i in ids]


@dataclass
class CheckResult:
    """What ``check`` found; ``to_dict`` is the ``--json`` line and ``check.json``."""

    train: str
    test: str | None
    items: dict[str, int]
    exact: dict[str, Any]
    near: list[dict[str, Any]] = field(default_factory=list)
    shift: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "train": self.train,
            "test": self.test,
            "items": self.items,
            "exact": self.exact,
            "near": self.near,
            "shift": self.shift,
            "labels": self.labels,
            "notes": self.notes,
        }


def check(
    train: str | os.PathLike[str] | None = None,
    test: str | os.PathLike[str] | None = None,
    *,
    workspace: str | os.PathLike[str] | Workspace | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    layer: str | None = None,
    models: list[str] | None = None,
    folds: int | None = None,
    seed: int = 0,
) -> CheckResult:
    """Check a training and a test set for leakage, shift and label problems.

    Args:
        train: training manifest CSV, folder or dataset name (default: the workspace's labeled
            training dataset).
        test: test manifest CSV, folder or dataset name (default: the workspace's most recently
            used test dataset, if any).
        workspace: the workspace folder.
        threshold: cosine similarity from which a cross-set pair is a near duplicate.
        layer: the layer compared for near duplicates (default: each store's first layer, the
            most acoustic one).
        models: the encoders (store models) to use (default: every store holding both sets).
        folds: the fold count classes must fill (default: the dataset's saved folds, else 5).
        seed: of the adversarial cross-validation.

    Returns:
        A :class:`CheckResult`, also saved as ``datasets/<train>/check.json`` (the HTML report
        shows it).

    Raises:
        ConfigError: a threshold outside (0, 1].
        DataError: no training dataset, or a manifest that cannot be read.
    """
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"--threshold {threshold}: use a cosine similarity in (0, 1]")
    ws = Workspace.at(workspace)
    tr_name, tr = _dataset(ws, train, "train")
    te_name, te = _dataset(ws, test, "test") if test is not None else _latest_test(ws, tr_name)
    h_tr = item_hashes(ws, tr_name, tr, compute=True)
    h_te = item_hashes(ws, te_name, te, compute=True) if te_name and te is not None else {}
    res = CheckResult(
        train=tr_name,
        test=te_name,
        items={"train": len(tr), "test": 0 if te is None else len(te)},
        exact=_exact(tr, te, h_tr, h_te),
    )
    if te is not None:
        sides = _Side(tr, h_tr), _Side(te, h_te)
        res.near, res.shift = _vectors(ws, *sides, threshold, layer, models, seed)
        res.notes += [n for entry in res.near for n in entry.pop("notes", [])]
        if not res.near:
            res.notes.append(
                "no embedding store holds both sets, so near duplicates and shift were not "
                f"checked; run 'sslstack extract --data <csv> --model logmel' on both ({tr.source}"
                f", {te.source})"
            )
    res.labels = label_problems(
        ws,
        tr_name,
        tr.label_lists(),
        te.label_lists() if te is not None else None,
        folds or _saved_k(ws, tr_name),
    )
    atomic_write_json(ws.dataset_dir(tr_name) / "check.json", res.to_dict())
    return res


def _dataset(ws: Workspace, data: Any, role: str) -> tuple[str, Manifest]:
    """Read and register ``data``; ``role`` names a new dataset only (never changes one)."""
    from pathlib import Path

    from ..datasets import load_dataset, read_dataset_manifest, register_dataset, resolve_dataset

    if data is None:
        return resolve_dataset(ws, None)
    if not Path(data).exists() and ws.dataset_dir(str(data)).exists():
        return str(data), load_dataset(ws, str(data))
    manifest = read_dataset_manifest(ws, data)
    return register_dataset(ws, manifest, role=role), manifest


def _latest_test(ws: Workspace, train: str) -> tuple[str | None, Manifest | None]:
    from ..datasets import list_datasets, load_dataset

    for meta in list_datasets(ws):  # most recently used first
        if meta.get("role") == "test" and meta["name"] != train:
            return meta["name"], load_dataset(ws, meta["name"])
    return None, None


def _saved_k(ws: Workspace, dataset: str) -> int:
    from ..classify.folds import DEFAULT_K
    from ..folds import load_folds

    if not (ws.dataset_dir(dataset) / "folds.json").exists():
        return DEFAULT_K
    return load_folds(ws, dataset).k


def _exact(
    tr: Manifest, te: Manifest | None, h_tr: dict[str, str], h_te: dict[str, str]
) -> dict[str, Any]:
    """Sets of ids with the same content within each set, and test items equal to a training
    item (content hash)."""
    within_tr = duplicate_sets(tr.ids, h_tr)
    within_te = duplicate_sets(te.ids, h_te) if te is not None else []
    first: dict[str, str] = {}
    for i in tr.ids:
        if i in h_tr:
            first.setdefault(h_tr[i], i)
    across = [
        {"id": i, "train_id": first[h_te[i]]}
        for i in (te.ids if te is not None else [])
        if i in h_te and h_te[i] in first
    ]
    return {
        "within_train": {"sets": len(within_tr), "examples": within_tr[:MAX_LISTED]},
        "within_test": {"sets": len(within_te), "examples": within_te[:MAX_LISTED]},
        "across": {"items": len(across), "examples": across[:MAX_LISTED]},
        "unhashed": len(tr) + (len(te) if te is not None else 0) - len(h_tr) - len(h_te),
    }


def _vectors(
    ws: Workspace,
    tr: _Side,
    te: _Side,
    threshold: float,
    layer: str | None,
    models: list[str] | None,
    seed: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Near duplicates and shift, per store that holds enough items of both sets."""
    from ..embeddings import list_stores

    near, shift = [], []
    for st in list_stores(ws):
        if models is not None and st.key.model not in models:
            continue
        have = st.index  # content hash -> row: the store is keyed by content
        a, b = tr.held(have), te.held(have)
        if len(a) < MIN_ITEMS or len(b) < MIN_ITEMS:
            continue
        near.append(_near(st, a, b, tr, te, threshold, layer))
        shift.append(_shift(st, a, b, tr.keys(a), te.keys(b), seed))
    return near, shift


def _name(st: Any) -> str:
    return f"{st.key.model} ({st.path.name})"


def _read(st: Any, layer: str, keys: list[str]) -> np.ndarray:
    """One layer of ``ids`` with every clip pooling of the store side by side (mean and std
    together tell a clip from another far better than the mean alone)."""
    return np.hstack([st.read(layer, pool, keys)[1] for pool in st.clip_pools()])


def _near(
    st: Any,
    a: list[str],
    b: list[str],
    tr: _Side,
    te: _Side,
    threshold: float,
    layer: str | None,
) -> dict[str, Any]:
    """Test items ``b`` whose nearest training item of ``a`` is at least ``threshold`` alike."""
    lay = st.layer_names[st.layer_index(layer)] if layer is not None else st.layer_names[0]
    nn = nearest(_read(st, lay, tr.keys(a)), _read(st, lay, te.keys(b)))
    h_tr, h_te, n_tr, n_te = tr.hashes, te.hashes, len(tr.manifest), len(te.manifest)
    pairs = []
    for j in np.argsort(-nn.cosine, kind="stable"):
        if nn.cosine[j] < threshold:
            break
        i_te, i_tr = b[j], a[int(nn.index[j])]
        if h_te.get(i_te) is not None and h_te.get(i_te) == h_tr.get(i_tr):
            continue  # an exact duplicate: reported as such
        pairs.append({"id": i_te, "train_id": i_tr, "cosine": float(nn.cosine[j])})
    notes = []
    if len(a) < n_tr or len(b) < n_te:
        notes.append(
            f"{_name(st)} holds {len(a)} of {n_tr} training and {len(b)} of {n_te} test items; "
            "the near-duplicate and shift checks cover those"
        )
    return {
        "encoder": st.key.model,
        "store": st.path.name,
        "layer": lay,
        "pools": st.clip_pools(),
        "threshold": threshold,
        "pairs": len(pairs),
        "examples": pairs[:MAX_LISTED],
        "notes": notes,
    }


def _feature(st: Any, column: int, width: int) -> str:
    """``mean[41]``: the pooling and index of a column of :func:`_read`'s matrix."""
    return f"{st.clip_pools()[column // width]}[{column % width}]"


def _shift(
    st: Any, a: list[str], b: list[str], ka: list[str], kb: list[str], seed: int
) -> dict[str, Any]:
    """Adversarial validation per layer (``a``, ``b``: ids; ``ka``, ``kb``: their content
    hashes); the encoder's verdict is its most shifted layer's. Features are numbered across
    the store's poolings side by side (``pools``)."""
    layers = []
    best = None
    for lay in st.layer_names:
        x = _read(st, lay, ka)
        s = adversarial(x, _read(st, lay, kb), seed=seed)
        width = x.shape[1] // len(st.clip_pools())
        layers.append({"layer": lay, "auc": s.auc})
        if best is None or abs(s.auc - 0.5) > abs(best[1].auc - 0.5):
            best = (lay, s)
    lay, s = best  # type: ignore[misc]  # a store has at least one layer
    order = np.argsort(-s.test_scores, kind="stable")[:MAX_LISTED]
    return {
        "encoder": st.key.model,
        "store": st.path.name,
        "pools": st.clip_pools(),
        "auc": s.auc,
        "se": s.se,
        "verdict": s.verdict,
        "layer": lay,
        "layers": sorted(layers, key=lambda d: -abs(d["auc"] - 0.5)),
        "features": [{"feature": _feature(st, f, width), "diff": d} for f, d in s.features],
        "least_like_train": [{"id": b[j], "score": float(s.test_scores[j])} for j in order],
    }


__all__ = ["CheckResult", "check"]
