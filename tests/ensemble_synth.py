"""Synthetic workspaces for the ensemble tests: a dataset with folds and runs of known quality.

Nothing here reads audio: the manifest points at empty files, the folds come from the
manifest's ``fold`` column, and runs are written through ``sslstack.runs.save_run`` exactly as
fit-head writes them (``run.json`` + ``oof.csv``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sslstack.classify.folds import get_folds
from sslstack.datasets import register_dataset
from sslstack.ensemble.encoding import Encoding
from sslstack.ensemble.proba import softmax
from sslstack.manifest import read_manifest
from sslstack.runs import new_run_id, save_run
from sslstack.workspace import Workspace

LABELS = {
    "binary": ("bonafide", "spoof"),
    "multiclass": ("a", "b", "c", "d"),
    "multilabel": ("dog", "cat", "bird"),
}


@dataclass
class Synth:
    ws: Workspace
    dataset: str
    ids: list[str]
    fold: np.ndarray
    y: np.ndarray
    enc: Encoding
    digest: str
    root: Path


def make_dataset(
    root: Path, task: str, n: int = 200, k: int = 5, seed: int = 0, name: str = "train"
) -> Synth:
    rng = np.random.default_rng(seed)
    labels = LABELS[task]
    enc = Encoding(task, labels, labels[1] if task == "binary" else None)
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    ids = [f"{name}_{i:04d}.wav" for i in range(n)]
    for i in ids:
        (audio / i).write_bytes(i.encode())  # distinct content: distinct items
    if task == "multilabel":
        y = (rng.random((n, len(labels))) < 0.4).astype(np.int64)
        y[y.sum(axis=1) == 0, 0] = 1
        y[0] = 1  # one item with every label makes the manifest multi-label
        text = [";".join(lab for lab, v in zip(labels, row, strict=True) if v) for row in y]
    else:
        y = rng.integers(0, len(labels), n)
        y[: len(labels)] = np.arange(len(labels))
        text = [labels[v] for v in y]
    fold = rng.permutation(np.arange(n) % k)
    csv = audio / f"{name}.csv"
    pd.DataFrame({"path": ids, "label": text, "fold": fold}).to_csv(csv, index=False)
    ws = Workspace.at(root / "ws")
    manifest = read_manifest(csv)
    dataset = register_dataset(ws, manifest)
    folds = get_folds(ws, dataset, manifest)
    assert list(folds.ids) == manifest.ids
    return Synth(ws, dataset, manifest.ids, folds.fold, y, enc, folds.digest, root)


def probs(
    s: Synth, strength: float, seed: int, noise: float = 1.0, temp: float = 1.0
) -> np.ndarray:
    """Probabilities whose logits are ``strength`` * truth + Gaussian noise, divided by temp."""
    rng = np.random.default_rng(seed)
    C = len(s.enc.labels)
    n = len(s.ids)
    if s.enc.task == "multilabel":
        z = strength * (2 * s.y - 1) + noise * rng.normal(size=(n, C))
        return 1 / (1 + np.exp(-z / temp))
    z = strength * np.eye(C)[s.y] + noise * rng.normal(size=(n, C))
    return softmax(z / temp)


def add_run(
    s: Synth,
    P: np.ndarray,
    tag: str,
    *,
    kind: str = "head",
    meta: dict | None = None,
    ids: list[str] | None = None,
    validate: bool = True,
) -> str:
    run_id, number = new_run_id(s.ws, kind, tag)
    rows = ids if ids is not None else s.ids
    pos = {i: n for n, i in enumerate(s.ids)}
    sel = [pos[i] for i in rows]
    frame = pd.DataFrame({"id": rows, "fold": s.fold[sel]})
    for c, lab in enumerate(s.enc.labels):
        frame[lab] = P[sel, c]
    m = {
        "id": run_id,
        "number": number,
        "kind": kind,
        "dataset": s.dataset,
        "folds_digest": s.digest,
        **s.enc.to_meta(),
        "head": "logreg",
        "encoder": "fake",
        "features": [],
        "params": {},
        "metric": "accuracy",
        "score": 0.0,
        "scores": {},
        "fold_scores": [],
        "trials": 1,
        "time_s": 0.0,
        "created": time.time(),
    }
    m.update(meta or {})
    save_run(s.ws, m, frame, validate=validate)
    return run_id
