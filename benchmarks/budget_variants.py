"""Boosted heads under ``--timeout`` on a real many-class task, one change at a time.

Runs ``fit_head(head, trials=50, timeout=S)`` on an existing workspace's store and dataset for
each variant: ``pca`` (``--pca`` value: ``off`` keeps full width; ``auto`` offers trees PCA
widths under a budget and starts at 64 on wide features) and ``pruner`` (``median`` or ``sha``,
successive halving over folds, set through ``search.BUDGET_PRUNER``). Prints one JSON line per
run and a table with AutoGluon's score when its JSON (``benchmarks/autogluon_run.py``) is given.

    PYTHONPATH=src taskset -c 0 python benchmarks/budget_variants.py --workspace W \\
        --model birdnet --data digit_speaker-a7098c15 --timeout 150 --threads 1 \\
        --runs xgb:off:median,xgb:auto:median,xgb:auto:sha --autogluon ag.json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import argparse
import json
import time

from sslstack.classify import fit_head
from sslstack.classify import search as search_mod
from sslstack.workspace import Workspace


def run(ws: Workspace, args: argparse.Namespace, head: str, pca: str, pruner: str) -> dict:
    """One budgeted ``fit_head`` under ``pca`` and ``pruner``; its row."""
    search_mod.BUDGET_PRUNER = pruner
    t0 = time.monotonic()
    res = fit_head(
        head, args.model, data=args.data, workspace=ws, trials=args.trials, timeout=args.timeout,
        threads=args.threads, pca=pca, study=f"{head}-{pca}-{pruner}-{args.timeout:g}-{args.tag}",
    )  # fmt: skip
    took = time.monotonic() - t0
    return {
        "head": head, "pca": pca, "pruner": pruner, "trials": res.trials,
        "seconds": round(took, 1), "accuracy": round(res.score, 4),
        "trial_score": res.trial_score, "refit": res.refit,
        "params": res.best_params, "warnings": res.warnings,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--timeout", type=float, required=True)
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", default="xgb:off:median,xgb:auto:median,xgb:auto:sha")
    ap.add_argument("--autogluon", type=Path, default=None, help="autogluon_run.py's JSON")
    ap.add_argument("--tag", default="a", help="part of the study names (a fresh study per tag)")
    args = ap.parse_args()
    ws = Workspace.at(args.workspace)
    rows = []
    for spec in args.runs.split(","):
        head, pca, pruner = spec.split(":")
        rows.append(run(ws, args, head, pca, pruner))
        print(json.dumps(rows[-1]), flush=True)
    ag = json.loads(args.autogluon.read_text()) if args.autogluon else None
    if ag:
        m = ag["models"]["best_quality"]
        print(f"AutoGluon best_quality: {m['accuracy']} in {ag['wall_s']} s")
    print(f"| head | --pca | pruner | trials | seconds (budget {args.timeout:g}) | OOF accuracy |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['head']} | {r['pca']} | {r['pruner']} | {r['trials']} | {r['seconds']} "
              f"| {r['accuracy']} |")  # fmt: skip


if __name__ == "__main__":
    main()
