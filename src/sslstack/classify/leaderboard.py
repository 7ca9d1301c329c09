"""The leaderboard of a workspace's runs (``sslstack runs ls``): one row per run, best first
per dataset and metric under each run's own metric (:func:`~sslstack.classify.metrics.rank_runs`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..workspace import Workspace
from .metrics import rank_runs


def leaderboard(
    workspace: str | os.PathLike[str] | Workspace | None = None, dataset: str | None = None
) -> list[dict[str, Any]]:
    """Rows of ``runs ls``: run, kind, dataset, encoder, head, layer, pooling, metric, score,
    fold mean and std, trials, time; damaged runs are set aside (quarantined) and left out.

    Args:
        workspace: the workspace folder.
        dataset: only the runs of this dataset.
    """
    from ..runs import verified_runs  # looked up at call time (tests replace it)

    rows = []
    for run in verified_runs(Workspace.at(workspace), dataset=dataset):
        rec = run.record
        fs = [v for v in rec.fold_scores if v is not None]
        fc = rec.feature_choice
        rows.append(
            {
                "run": run.id,
                "number": run.number,
                "kind": rec.kind,
                "dataset": rec.dataset,
                "encoder": rec.encoder,
                "head": rec.head or rec.method,
                "layer": (fc.layer if fc else None)
                or ",".join(dict.fromkeys(str(f.layer) for f in rec.features))
                or None,
                "pool": (fc.pool if fc else None)
                or ",".join(dict.fromkeys(str(f.pool) for f in rec.features))
                or None,
                "metric": rec.metric,
                "score": rec.score,
                "fold_mean": float(np.mean(fs)) if fs else None,
                "fold_std": float(np.std(fs)) if len(fs) > 1 else None,
                "trials": rec.trials,
                "time_s": rec.time_s,
            }
        )

    ranked = rank_runs(rows, lambda r: r["metric"], lambda r: r["score"])
    return sorted(ranked, key=lambda r: (str(r["dataset"]), str(r["metric"])))  # stable
