"""Run AutoGluon-Tabular on exported features + folds (benchmark only; runs in its own venv).

Reads an ``.npz`` written by ``benchmarks/heads.py --autogluon`` (``x``, ``y``, ``fold``; no
pickles), fits AutoGluon on each fold's training part and predicts its validation part, and writes
one JSON: per model, the out-of-fold accuracy over all folds and the summed fit time.

    /work/agvenv/bin/python benchmarks/autogluon_run.py in.npz out.json --mode families
    /work/agvenv/bin/python benchmarks/autogluon_run.py in.npz out.json --mode best_quality

``families``: AutoGluon's LightGBM, CatBoost and XGBoost models with its default
hyperparameters (its own early stopping on a holdout of each training part), no bagging, each
fitted on its own with the whole ``--time-limit`` per fold (fitted together, the first model
took the whole limit and the others were skipped).
``best_quality``: the preset (bagged and stacked ensembles of all of its models).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import pandas as pd

FAMILIES = ("GBM", "CAT", "XGB")
FAMILY_OF = {"LightGBM": "lgbm", "CatBoost": "catboost", "XGBoost": "xgb"}


def _frame(x: np.ndarray, y: np.ndarray | None = None) -> pd.DataFrame:
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    if y is not None:
        df["label"] = y
    return df


def _fit(args: argparse.Namespace, train: pd.DataFrame, tmp: str, **kw: object):
    from autogluon.tabular import TabularPredictor

    return TabularPredictor(label="label", eval_metric="accuracy", path=tmp, verbosity=0).fit(
        train, time_limit=args.time_limit, num_cpus=args.cpus, **kw
    )


def _fold(args: argparse.Namespace, x: np.ndarray, y: np.ndarray, tr: np.ndarray, va: np.ndarray):
    """One outer fold: each family fitted on its own with the whole time limit (families), or
    the preset (best_quality, without dynamic stacking, whose sub-fit fails on a reused path)."""
    if args.mode == "best_quality":
        runs = [{"presets": "best_quality", "dynamic_stacking": False}]
    else:
        runs = [{"hyperparameters": {fam: {}}} for fam in FAMILIES]
    out: dict = {"wall_s": 0.0, "models": {}}
    test = _frame(x[va])
    for kw in runs:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            pred = _fit(args, _frame(x[tr], y[tr]), tmp, **kw)
            wall = time.perf_counter() - t0
            out["wall_s"] += wall
            board = pred.leaderboard(silent=True)
            names = [pred.model_best] if args.mode == "best_quality" else [
                m for m in board["model"] if not str(m).startswith("WeightedEnsemble")
            ]  # fmt: skip
            for name in names:
                p = pred.predict_proba(test, model=name)
                classes = np.array(p.columns)
                row = board[board["model"] == name].iloc[0]
                out["models"][str(name)] = {
                    "pred": classes[np.asarray(p).argmax(axis=1)].tolist(),
                    "fit_s": wall if args.mode == "best_quality" else float(row["fit_time"]),
                }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--mode", choices=("families", "best_quality"), default="families")
    ap.add_argument("--time-limit", type=float, default=120.0, help="seconds per fold")
    ap.add_argument("--cpus", type=int, default=2)
    args = ap.parse_args()
    with np.load(args.inp, allow_pickle=False) as z:
        x, y, fold = z["x"], z["y"], z["fold"]
    correct: dict[str, int] = {}
    fit_s: dict[str, float] = {}
    folds_of: dict[str, int] = {}
    wall = 0.0
    for f in np.unique(fold):
        tr, va = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        res = _fold(args, x, y, tr, va)
        wall += res["wall_s"]
        for name, m in res["models"].items():
            key = "best_quality" if args.mode == "best_quality" else name
            correct[key] = correct.get(key, 0) + int((np.array(m["pred"]) == y[va]).sum())
            fit_s[key] = fit_s.get(key, 0.0) + m["fit_s"]
            folds_of[key] = folds_of.get(key, 0) + 1
        print(f"fold {f}: {res['wall_s']:.0f} s", flush=True)
    result = {
        "mode": args.mode,
        "time_limit_per_fold": args.time_limit,
        "wall_s": round(wall, 1),
        "models": {
            k: {
                "accuracy": round(correct[k] / len(y), 4),
                "fit_s": round(fit_s[k], 1),
                "folds": folds_of[k],
            }
            for k in correct
        },
    }
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
