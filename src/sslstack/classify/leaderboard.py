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
        m = run.meta
        fs = [v for v in m.get("fold_scores") or [] if v is not None]
        feats = m.get("features") or []
        fc = m.get("feature_choice") or {}
        rows.append(
            {
                "run": run.id,
                "number": run.number,
                "kind": m.get("kind"),
                "dataset": m.get("dataset"),
                "encoder": m.get("encoder"),
                "head": m.get("head") or m.get("method"),
                "layer": fc.get("layer")
                or ",".join(dict.fromkeys(str(f.get("layer")) for f in feats))
                or None,
                "pool": fc.get("pool")
                or ",".join(dict.fromkeys(str(f.get("pool")) for f in feats))
                or None,
                "metric": m.get("metric"),
                "score": m.get("score"),
                "fold_mean": float(np.mean(fs)) if fs else None,
                "fold_std": float(np.std(fs)) if len(fs) > 1 else None,
                "trials": m.get("trials"),
                "time_s": m.get("time_s"),
            }
        )

    ranked = rank_runs(rows, lambda r: r["metric"], lambda r: r["score"])
    return sorted(ranked, key=lambda r: (str(r["dataset"]), str(r["metric"])))  # stable
