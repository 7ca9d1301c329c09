"""XGBoost tuning: sslstack's ``fit_head xgb`` against the straightforward Optuna loop.

Same features, same folds, same number of trials, in one run. The baseline is what users write:
Optuna TPE over the usual XGBoost space, each trial a plain k-fold loop with a fixed number of
rounds, the full embedding width, default bins and no pruning. sslstack adds early stopping on an
inner split, PCA inside each fold as a tuned option, 64 bins and median pruning across folds.

Features: FSDD (3000 clips, speaker-grouped folds) embedded by a random-initialized wav2vec2-base
(768 dims) built from its config. Extraction is cached in --workspace, so reruns skip it.

    python benchmarks/heads.py --trials 10 --workspace /tmp/bench-heads

``--autogluon TASK`` (synth50, fsdd-digits, fsdd-digit-speaker) compares every head and the
stack with AutoGluon-Tabular on the same features and folds instead (benchmarks/heads_autogluon.py;
AutoGluon lives in its own venv, ``--ag-python``):

    nice python benchmarks/heads.py --autogluon synth50 --workspace /tmp/bh-synth50
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import xgboost as xgb

from sslstack import extract, load_embeddings
from sslstack.classify import fit_head, get_metric
from sslstack.classify.folds import load_folds
from sslstack.datasets import resolve_dataset
from sslstack.workspace import Workspace

# ../shared relative to the repo root (a worktree one level deeper finds it one level up)
FSDD = next(
    (
        p / "shared" / "data" / "fsdd"
        for p in Path(__file__).resolve().parents[2:4]
        if (p / "shared" / "data" / "fsdd").is_dir()
    ),
    Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd",
)


def naive_study(
    x: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    trials: int,
    rounds: int,
    seed: int,
    threads: int,
) -> tuple[float, float]:
    """Optuna + a plain k-fold loop per trial, fixed rounds, no pruning. Returns (best acc, s)."""
    k = int(folds.max()) + 1

    def objective(trial: optuna.Trial) -> float:
        params = dict(
            max_depth=trial.suggest_int("max_depth", 3, 10),
            learning_rate=trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            min_child_weight=trial.suggest_float("min_child_weight", 1, 20, log=True),
            subsample=trial.suggest_float("subsample", 0.5, 1.0),
            colsample_bytree=trial.suggest_float("colsample_bytree", 0.3, 1.0),
            reg_alpha=trial.suggest_float("reg_alpha", 1e-8, 10, log=True),
            reg_lambda=trial.suggest_float("reg_lambda", 1e-8, 10, log=True),
        )
        correct = 0
        for f in range(k):
            tr, va = folds != f, folds == f
            clf = xgb.XGBClassifier(
                n_estimators=rounds, tree_method="hist", n_jobs=threads, random_state=seed, **params
            )
            clf.fit(x[tr], y[tr])
            correct += int((clf.predict(x[va]) == y[va]).sum())
        return correct / len(y)

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    t0 = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return study.best_value, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=300, help="baseline's fixed boosting rounds")
    ap.add_argument("--layer", default="6")
    ap.add_argument("--items", type=int, default=0, help="use a subset of FSDD (0: all 3000)")
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--skip-naive", action="store_true", help="run sslstack's side only (while iterating)"
    )
    ap.add_argument("--autogluon", choices=("synth50", "fsdd-digits", "fsdd-digit-speaker"))
    ap.add_argument("--ag-python", default="/work/agvenv/bin/python")
    ap.add_argument("--ag-time-limit", type=float, default=60.0, help="AutoGluon s per fold")
    ap.add_argument("--heads", default="logreg:20:300,xgb:20:300,catboost:20:300",
                    help="head:trials:timeout,... for --autogluon")  # fmt: skip
    ap.add_argument("--skip-best-quality", action="store_true")
    ap.add_argument(
        "--reuse-autogluon",
        action="store_true",
        help="read AutoGluon's results beside the .npz, never run it (missing: '-')",
    )
    args = ap.parse_args()
    if args.autogluon:
        autogluon_mode(args)
        return
    ws = Workspace.at(args.workspace or Path(tempfile.mkdtemp(prefix="sslstack-heads-")))
    ws.root.mkdir(parents=True, exist_ok=True)
    data = FSDD / "metadata.csv"
    if args.items:
        import pandas as pd

        meta = pd.read_csv(data).sample(n=args.items, random_state=0)
        meta["path"] = [str((FSDD / p).resolve()) for p in meta["path"]]
        data = ws.root / "subset.csv"
        meta.to_csv(data, index=False)
    model_dir = ws.root / "wav2vec2-base-random"
    if not model_dir.exists():
        from benchmarks.extract import build_model

        build_model("wav2vec2-base", ws.root)
        (ws.root / "wav2vec2-base").rename(model_dir)
    t0 = time.perf_counter()
    extract(
        data, str(model_dir), workspace=ws, pools=("mean",), layers=(int(args.layer),), dtype="bf16"
    )
    t_extract = time.perf_counter() - t0
    # sslstack first: it creates the dataset's shared speaker-grouped folds
    t0 = time.perf_counter()
    res = fit_head(
        "xgb",
        str(model_dir),
        data=data,
        workspace=ws,
        layer=args.layer,
        pool="mean",
        trials=args.trials,
        metric="accuracy",
        group_col="speaker",
        seed=args.seed,
        threads=args.threads,
    )
    t_ours = time.perf_counter() - t0
    name, manifest = resolve_dataset(ws, data)
    folds = load_folds(ws, name)
    ids = manifest.ids
    _, x = load_embeddings(str(model_dir), int(args.layer), "mean", workspace=ws, ids=ids)
    labels = sorted(set(manifest.frame["label"]))
    y = np.array([labels.index(v) for v in manifest.frame["label"]])
    fold_of = dict(zip(folds.ids, folds.fold, strict=True))
    f = np.array([fold_of[i] for i in ids])
    if args.skip_naive:
        print(
            json.dumps(
                {
                    "sslstack": res.score,
                    "best_trial": res.trial_score,
                    "seconds": round(t_ours, 1),
                    **res.best_params,
                }
            )
        )
        return
    best_naive, t_naive = naive_study(x, y, f, args.trials, args.rounds, args.seed, args.threads)
    acc = get_metric("accuracy")
    out = {
        "items": len(ids),
        "dim": int(x.shape[1]),
        "folds": int(f.max()) + 1,
        "trials": args.trials,
        "extract_s": round(t_extract, 1),
        "naive": {"best_accuracy": round(best_naive, 4), "seconds": round(t_naive, 1)},
        "sslstack": {
            "best_accuracy": round(res.score, 4),
            "best_trial_accuracy": round(res.trial_score or float("nan"), 4),
            "seconds": round(t_ours, 1),
            "params": res.best_params,
            "run": res.run,
        },
        "time_ratio_naive_over_sslstack": round(t_naive / t_ours, 2),
        "metric": acc.name,
    }
    print(json.dumps(out, indent=1))
    print("| method | trials | best trial's accuracy | run's accuracy (refit) | wall time (s) |")
    print("|---|---|---|---|---|")
    print(
        f"| naive Optuna + {out['folds']}-fold loop, {args.rounds} rounds | {args.trials} | "
        f"{best_naive:.4f} | - | {t_naive:.1f} |"
    )
    print(
        f"| sslstack fit-head xgb | {args.trials} | {res.trial_score or float('nan'):.4f} | "
        f"{res.score:.4f} | {t_ours:.1f} |"
    )
    print(f"time ratio naive / sslstack: {t_naive / t_ours:.2f}")


def autogluon_mode(args: argparse.Namespace) -> None:
    """sslstack's heads and stack against AutoGluon on one task (same features and folds)."""
    from benchmarks import heads_autogluon as hag

    ws = Workspace.at(args.workspace or Path(tempfile.mkdtemp(prefix="sslstack-ag-")))
    ws.root.mkdir(parents=True, exist_ok=True)
    csv, model, group = hag.build(args.autogluon, ws, args.seed)
    heads = {}
    for spec in args.heads.split(","):
        name, trials, timeout = spec.split(":")
        heads[name] = (int(trials), float(timeout))
    ours = hag.run_sslstack(ws, csv, model, group, heads, args.seed, args.threads)
    npz = ws.root / f"{args.autogluon}.npz"
    fresh = npz.with_name(f"{npz.stem}-check.npz")
    shape = hag.export(ws, csv, model, fresh)  # the folds exist now (the heads made them)
    if npz.exists():  # AutoGluon ran before on this file: it must hold these features and folds
        with np.load(npz) as a, np.load(fresh) as b:
            if not all(np.array_equal(a[k], b[k]) for k in ("x", "y", "fold")):
                raise SystemExit(f"{npz} holds other features or folds than this workspace")
        fresh.unlink()
    else:
        fresh.rename(npz)
    run = not args.reuse_autogluon
    ag = hag.run_autogluon(args.ag_python, npz, "families", args.ag_time_limit, args.threads, run)
    bq = None
    if not args.skip_best_quality:
        bq = hag.run_autogluon(args.ag_python, npz, "best_quality", args.ag_time_limit,
                               args.threads, run)  # fmt: skip
    result = {"task": args.autogluon, "shape": shape, "sslstack": ours, "autogluon": ag,
              "best_quality": bq}  # fmt: skip
    (ws.root / f"{args.autogluon}-result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    print(hag.table(args.autogluon, shape, ours, ag, bq))


if __name__ == "__main__":
    main()
