"""``predict_head``: apply a saved head run to items of any dataset already extracted."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..embeddings import find_store
from ..errors import RunError
from ..runs import Run, load_run
from ..workspace import Workspace
from .cv import FoldModel, load_models, predict_fold
from .features import FeatureChoice, FeatureReader
from .heads import get_head
from .labels import LabelEncoding
from .windows import aggregate, window_matrix


def predict_head(
    ws: Any, run: Run | str | int, ids: Sequence[str], keys: Sequence[str] | None = None
) -> np.ndarray:
    """Probabilities ``(n, n_labels)`` of a head run for ``ids``, averaged over its fold models.

    The items must already be extracted with the run's encoder (same store).

    Args:
        keys: the items' content hashes; by default looked up in the workspace's datasets
            (:func:`sslstack.datasets.hashes_of_ids`).

    Raises:
        RunError: the run is not a head run or its models are missing.
        StoreError: items without embeddings in the run's store.
    """
    w = Workspace.at(ws)
    r = run if isinstance(run, Run) else load_run(w, run)
    if r.record.kind != "head":
        raise RunError(f"run {r.id} is a {r.record.kind} run, not a head run")
    hd = get_head(str(r.record.head))
    enc = LabelEncoding(r.record.task, tuple(r.record.labels), r.record.positive)
    fc = r.record.head_choice()
    st = find_store(str(r.record.encoder), w, store=fc.store)
    if keys is None:
        from ..datasets import hashes_of_ids

        keys = hashes_of_ids(w, ids)
    st.check_keys(keys, names=ids)
    choice = FeatureChoice(fc.layer, fc.pool)
    how = r.record.params.get("windows")
    for name in r.record.models:  # inside the run's folder, as saved (checksums)
        r.check_file(f"models/{name}")
    models: list[FoldModel] = load_models(hd, r.dir / "models", r.record.models)
    if not models:
        raise RunError(f"run {r.id}: no fold models in {r.dir / 'models'}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if how:  # a window-level head: each window predicted, then aggregated to its clip
            wd = window_matrix(st, list(keys), choice)
            per = [predict_fold(hd, fm, wd.x, enc) for fm in models]
            return np.mean([aggregate(p, wd.owner, len(ids), how, enc) for p in per], axis=0)
        x = FeatureReader(st, list(keys)).matrix(choice)
        return np.mean([predict_fold(hd, fm, x, enc) for fm in models], axis=0)
