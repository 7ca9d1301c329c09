"""The AutoGluon mode of ``benchmarks/heads.py``: sslstack's heads + stack against AutoGluon.

Tasks (each a workspace with a store whose layer ``0`` holds poolings mean/std/max, 192 columns
concatenated, and the dataset's shared folds):

- ``synth50``: scikit-learn ``make_classification``, 2000 x 192, 50 classes, stratified 5 folds;
- ``fsdd-digits``: FSDD, 3000 clips, 10 digits, ``logmel`` mean/std/max, speaker-grouped folds;
- ``fsdd-digit-speaker``: the same clips labeled digit x speaker (60 classes), stratified folds.

The store's concatenation ``0``/``mean+std+max`` and the folds are exported to an ``.npz``
(no pickles), AutoGluon runs on it in its own venv by subprocess (``--ag-python``), then
``fit_head`` runs each head (its search includes that concatenation) and ``stack`` blends them.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.synth_store import synth_store
from sslstack import extract
from sslstack.classify import fit_head
from sslstack.classify.features import FeatureChoice, FeatureReader
from sslstack.classify.folds import load_folds
from sslstack.datasets import resolve_dataset
from sslstack.errors import RunError
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
CONCAT = FeatureChoice("0", "mean+std+max")
TASKS = ("synth50", "fsdd-digits", "fsdd-digit-speaker")


def _synth(ws: Workspace, seed: int) -> tuple[Path, str | None]:
    """make_classification 2000 x 192, 50 classes, written as a store of three 64-wide poolings."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=2000, n_features=192, n_informative=48, n_redundant=48, n_classes=50,
        n_clusters_per_class=2, class_sep=2.8, random_state=seed,
    )  # fmt: skip
    return synth_store(ws, "synth50", x, y, ("mean", "std", "max")), None


def _fsdd(ws: Workspace, digit_speaker: bool) -> tuple[Path, str | None]:
    meta = pd.read_csv(FSDD / "metadata.csv")
    meta["path"] = [str((FSDD / p).resolve()) for p in meta["path"]]
    if digit_speaker:
        meta["label"] = [f"{d}_{s}" for d, s in zip(meta["label"], meta["speaker"], strict=True)]
        meta = meta.drop(columns=["speaker"])
    csv = ws.root / ("fsdd_digit_speaker.csv" if digit_speaker else "fsdd_digits.csv")
    meta.to_csv(csv, index=False)
    extract(csv, "logmel", workspace=ws, pools=("mean", "std", "max"))
    return csv, None if digit_speaker else "speaker"


def build(task: str, ws: Workspace, seed: int) -> tuple[Path, str, str | None]:
    """The task's manifest, the model name of its store, and its group column."""
    if task == "synth50":
        csv, g = _synth(ws, seed)
        return csv, "synth50", g
    csv, g = _fsdd(ws, task == "fsdd-digit-speaker")
    return csv, "logmel", g


def export(ws: Workspace, csv: Path, model: str, out: Path) -> tuple[int, int, int]:
    """Write the concatenated features, integer labels and fold numbers to ``out`` (.npz)."""
    from sslstack.datasets import item_hashes
    from sslstack.embeddings import find_store

    name, manifest = resolve_dataset(ws, csv)
    folds = load_folds(ws, name)
    ids = manifest.ids
    hashes = item_hashes(ws, name)
    x = FeatureReader(find_store(model, ws), [hashes[i] for i in ids]).matrix(CONCAT)
    labels = sorted(set(manifest.frame["label"]))
    y = np.array([labels.index(v) for v in manifest.frame["label"]])
    fold_of = dict(zip(folds.ids, folds.fold, strict=True))
    f = np.array([fold_of[i] for i in ids])
    np.savez(out, x=x, y=y, fold=f)
    return x.shape[0], x.shape[1], len(labels)


def run_autogluon(
    ag_python: str, npz: Path, mode: str, limit: float, cpus: int, run: bool = True
) -> dict[str, Any]:
    """AutoGluon's results on ``npz`` in ``mode``: read from beside it, or run first (``run``)."""
    out = npz.with_name(f"{npz.stem}-{mode}.json")
    if not out.exists() and not run:
        return {"models": {}}
    if not out.exists():
        script = Path(__file__).with_name("autogluon_run.py")
        cmd = ["nice", ag_python, str(script), str(npz), str(out), "--mode", mode,
               "--time-limit", str(limit), "--cpus", str(cpus)]  # fmt: skip
        subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def run_sslstack(
    ws: Workspace, csv: Path, model: str, group: str | None, heads: dict[str, tuple[int, float]],
    seed: int, threads: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """``fit_head`` for each head (trials, timeout), then ``stack``; scores and seconds."""
    from sslstack.ensemble import stack

    out: dict[str, Any] = {}
    total = 0.0
    for head, (trials, timeout) in heads.items():
        t0 = time.perf_counter()
        try:
            res = fit_head(
                head, model, data=csv, workspace=ws, trials=trials, timeout=timeout,
                metric="accuracy", group_col=group, seed=seed, threads=threads,
                study=f"{head}-bench-{trials}-{timeout:g}-{threads}",
            )  # fmt: skip
        except RunError as e:  # a budget too small for one trial: recorded, not fatal
            out[head] = {"error": str(e), "seconds": round(time.perf_counter() - t0, 1)}
            print(head, json.dumps(out[head]), flush=True)
            continue
        dt = time.perf_counter() - t0
        total += dt
        out[head] = {"accuracy": round(res.score, 4), "seconds": round(dt, 1),
                     "trials": res.trials, "params": res.best_params, "run": res.run,
                     "warnings": res.warnings}  # fmt: skip
        print(head, json.dumps(out[head]), flush=True)
    name, _ = resolve_dataset(ws, csv)
    t0 = time.perf_counter()
    runs = [out[h]["run"] for h in heads if "run" in out[h]]
    st = stack(ws, runs=runs, data=name, metric="accuracy")
    dt = time.perf_counter() - t0
    out["stack"] = {"accuracy": round(st.score, 4), "seconds": round(dt, 1), "method": st.method}
    out["all_heads_and_stack_s"] = round(total + dt, 1)
    return out


def table(task: str, shape: tuple[int, int, int], ours: dict[str, Any], ag: dict[str, Any],
          bq: dict[str, Any] | None) -> str:  # fmt: skip
    """The side-by-side Markdown table of one task."""
    n, d, k = shape
    lines = [f"task {task}: {n} items x {d} columns, {k} classes", "",
             "| model | sslstack accuracy | sslstack s | AutoGluon accuracy | AutoGluon fit s "
             "| time AutoGluon / sslstack |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    fam = {"lgbm": "LightGBM", "xgb": "XGBoost", "catboost": "CatBoost"}
    for head, res in ours.items():
        if not isinstance(res, dict):
            continue
        if "error" in res:
            lines.append(f"| {head} | no trial finished | {res['seconds']} | - | - |")
            continue
        agm = ag["models"].get(fam.get(head, ""), {}) if head in fam else {}
        if head == "stack":
            agm = (bq or {}).get("models", {}).get("best_quality", {})
            agm = {**agm, "fit_s": (bq or {}).get("wall_s")}
        ratio = "-"
        if isinstance(agm.get("fit_s"), (int, float)) and res["seconds"]:
            ratio = f"{agm['fit_s'] / res['seconds']:.1f}x"
        agc = f"{agm.get('accuracy', '-')} | {agm.get('fit_s', '-')}"
        lines.append(f"| {head} | {res['accuracy']:.4f} | {res['seconds']} | {agc} | {ratio} |")
    for name, m in ag["models"].items():
        if name not in fam.values():
            lines.append(f"| AutoGluon {name} | - | - | {m['accuracy']} | {m['fit_s']} | - |")
    lines.append(f"sslstack all heads + stack: {ours['all_heads_and_stack_s']} s")
    return "\n".join(lines)
