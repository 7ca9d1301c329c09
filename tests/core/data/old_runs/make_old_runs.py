"""Make old-format run folders with the code of main 3def7c8 (schema 3), then derive 2 and 1."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from sslstack.classify.folds import get_folds
from sslstack.datasets import register_dataset
from sslstack.manifest import read_manifest
from sslstack.runs import new_run_id, save_run
from sslstack.workspace import Workspace

root = Path(sys.argv[1])
shutil.rmtree(root, ignore_errors=True)
root.mkdir()
audio = root / "audio"
audio.mkdir()
ids = [f"x{i}.wav" for i in range(8)]
for i in ids:
    (audio / i).write_bytes(i.encode())
pd.DataFrame({"path": ids, "label": ["a", "b"] * 4}).to_csv(audio / "t.csv", index=False)
ws = Workspace.at(root / "ws")
m = read_manifest(audio / "t.csv")
name = register_dataset(ws, m)
folds = get_folds(ws, name, m, k=2)
p = np.linspace(0.1, 0.9, 8)
oof = pd.DataFrame(
    {"id": list(folds.ids), "fold": folds.fold_of(list(folds.ids)), "a": 1 - p, "b": p}
)


def head(tag):
    rid, n = new_run_id(ws, "head", tag)
    return {
        "id": rid,
        "number": n,
        "kind": "head",
        "dataset": name,
        "folds_digest": folds.digest,
        "task": "binary",
        "labels": ["a", "b"],
        "positive": "b",
        "head": "logreg",
        "encoder": "logmel",
        "features": [
            {"store": "logmel-e9ad69a6c0", "model": "logmel", "layer": "0", "pool": "mean"}
        ],
        "params": {"C": 1.0},
        "metric": "accuracy",
        "score": 0.75,
        "scores": {"accuracy": 0.75, "roc_auc": None},
        "fold_scores": [0.5, 1.0],
        "trials": 3,
        "time_s": 1.5,
        "created": 1700000000.0,
        "feature_choice": {"store": "logmel-e9ad69a6c0", "layer": "0", "pool": "mean"},
        "trial_score": 0.8,
        "study": None,
        "storage": None,
        "device": "cpu",
        "max_rounds": 200,
        "warnings": [],
        "models": ["fold0.npz", "fold1.npz"],
        "future_key": {"kept": True},
    }


def fill(d):
    (d / "models").mkdir()
    (d / "models/fold0.npz").write_bytes(b"0")
    (d / "models/fold1.npz").write_bytes(b"1")


for tag in ("logreg-s1", "logreg-s2", "logreg-s3"):
    save_run(ws, head(tag), oof, fill=fill)
rid, n = new_run_id(ws, "stack", "greedy")
save_run(
    ws,
    {
        "id": rid,
        "number": n,
        "kind": "stack",
        "dataset": name,
        "folds_digest": folds.digest,
        "task": "binary",
        "labels": ["a", "b"],
        "positive": "b",
        "head": None,
        "encoder": None,
        "features": [
            {"store": "logmel-e9ad69a6c0", "model": "logmel", "layer": "0", "pool": "mean"}
        ],
        "params": {"weights": [1.0]},
        "metric": "accuracy",
        "score": 0.75,
        "scores": {"accuracy": 0.75},
        "fold_scores": [0.5, 1.0],
        "trials": 0,
        "time_s": 0.1,
        "created": 1700000001.0,
        "base_runs": ["r0003-logreg-s3"],
        "method": "greedy",
        "weights": {"r0003-logreg-s3": 1.0},
        "calibration": None,
        "table": {"greedy": {"score": 0.75, "fold_scores": [0.5, 1.0]}},
        "config": {"method": "auto"},
    },
    oof,
)


def rewrite(rid, schema):
    path = ws.run_dir(rid) / "run.json"
    d = json.loads(path.read_text())
    for k in ("_sha256", "files", "oof_sha256", "oof_rows"):
        d.pop(k)
    if schema == 1:
        d.pop("schema")
    else:
        d["schema"] = 2
    path.write_text(json.dumps(d, indent=2, sort_keys=True) + "\n")


rewrite("r0001-logreg-s1", 1)
rewrite("r0002-logreg-s2", 2)
