"""Budgets that buy tuning: boosted heads under ``--timeout`` on 50 classes and 1024-d inputs.

A ``make_classification`` task of 2000 rows, 1024 columns (two 512-wide poolings, mean and std,
so the head's search sees each and their concatenation) and 50 classes, stratified 5 folds.
Each head is tuned under the same ``--timeout``; the table says how many trials finished, how
long the command took against its budget, the out-of-fold accuracy, and the run's warnings
(whether the budget, not early stopping, ended the boosting; whether the run refit).

    python benchmarks/heads_budget.py --heads xgb,catboost,lgbm --timeout 300 \
        --workspace /tmp/bench-budget
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import argparse
import json
import time

from benchmarks.synth_store import synth_store
from sslstack.classify import fit_head
from sslstack.workspace import Workspace


def build(ws: Workspace, seed: int = 0) -> Path:
    """The task's manifest; its store ``synth1024`` (layer 0, poolings mean and std)."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=2000, n_features=1024, n_informative=64, n_redundant=64, n_classes=50,
        n_clusters_per_class=2, class_sep=2.5, random_state=seed,
    )  # fmt: skip
    return synth_store(ws, "synth1024", x, y, ("mean", "std"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--heads", default="xgb,catboost,lgbm")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--workspace", type=Path, required=True)
    args = ap.parse_args()
    ws = Workspace.at(args.workspace)
    ws.root.mkdir(parents=True, exist_ok=True)
    csv = build(ws)
    rows = []
    for head in args.heads.split(","):
        t0 = time.monotonic()
        res = fit_head(
            head, "synth1024", data=csv, workspace=ws, trials=args.trials, timeout=args.timeout,
            threads=args.threads, study=f"{head}-budget-{args.timeout:g}",
        )  # fmt: skip
        took = time.monotonic() - t0
        row = {
            "head": head,
            "trials": res.trials,
            "seconds": round(took, 1),
            "over_budget": round(took / args.timeout - 1.0, 3),
            "accuracy": round(res.score, 4),
            "trial_score": res.trial_score,
            "refit": res.refit,
            "params": res.best_params,
            "warnings": res.warnings,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"| head | trials | seconds (budget {args.timeout:g}) | OOF accuracy | refit |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['head']} | {r['trials']} | {r['seconds']} | {r['accuracy']} | {r['refit']} |")


if __name__ == "__main__":
    main()
