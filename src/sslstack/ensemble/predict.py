"""``predict``: a run or stack applied to new audio, written as a validated submission.

The chosen run's tree is walked down to its head runs: for each head run every store its
features come from is extended with the test items through ``extract`` (same settings, same
store, so a second call computes nothing), the fold models are applied by classify's
``predict_head``; stacks combine their base runs' predictions with the saved method and
calibration; imported runs read the test predictions saved with them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..classify.metrics import score_all
from ..errors import ConfigError, DataError, RunError, StoreError
from ..manifest import LABEL_SEP, Manifest
from ..runs import Run
from ..workspace import Workspace
from . import methods as _methods
from .base_runs import encoding_of
from .calibrate import apply_calibration
from .encoding import Encoding
from .prediction import PredictConfig, PredictResult, save_test_scores
from .proba import finish
from .submission import check_ids, check_labels, check_probabilities, write_csv

# StoreKey fields that extract takes as settings under the same name
_KEY_SETTINGS = ("pools", "layers", "window", "hop", "max_seconds", "crop", "dtype", "storage")


def predict(
    data: str | os.PathLike[str],
    config: PredictConfig | None = None,
    *,
    workspace: str | os.PathLike[str] | Workspace | None = None,
    progress: bool = False,
    **settings: Any,
) -> PredictResult:
    """Predict the items of ``data`` with a run or stack and write a submission CSV.

    Takes a :class:`PredictConfig` (``predict("test.csv", PredictConfig(out="sub.csv"))``, as
    the CLI builds it) or its fields as arguments (``predict("test.csv", out="sub.csv")``).
    With labeled test items the scores are also saved in the workspace
    (``<ws>/predictions/``), where ``sslstack report`` shows them.

    Args:
        data: test manifest CSV or audio folder (labels optional).
        config: the run to apply and the submission's shape (:class:`PredictConfig`).
        workspace: the workspace folder.
        progress: show extraction progress on stderr.
        **settings: the fields of :class:`PredictConfig`, instead of ``config``.

    Returns:
        A :class:`PredictResult` with the written path and, when ``data`` has labels, scores
        over the items whose labels the run knows (``unseen`` names the others).

    Raises:
        DataError: the submission fails validation. RunError: no run to predict with.
        ConfigError: an unknown setting, or a config and settings together.
    """
    from ..datasets import read_dataset_manifest, register_dataset

    cfg = PredictConfig.of(config, settings)
    ws = Workspace.at(workspace)
    manifest = read_dataset_manifest(ws, data, label_col=cfg.label_col)
    dataset = register_dataset(ws, manifest, role="test")
    chosen = choose_run(ws, cfg.run)
    enc = encoding_of(chosen.record)
    extracted: list[dict[str, Any]] = []
    failed = _extract_all(ws, chosen, manifest, extracted, progress, cfg.on_error)
    if failed:
        manifest = _without(manifest, {f["id"] for f in failed})
    P = predict_run(ws, chosen, manifest, extracted=extracted, progress=progress)
    frame, cols = _frame(manifest.ids, P, enc, cfg.label, cfg.id_column, cfg.columns)
    _validate(frame, manifest.ids, enc, cfg.label, cols, source=str(cfg.out or "submission"))
    path = write_csv(frame, cfg.out) if cfg.out is not None else None
    scores, scored, unseen = _scores(manifest, enc, P)
    leaked = leaked_items(ws, chosen.record.dataset, dataset, manifest)
    leaked_scored, unleaked = _leak_scores(manifest, enc, P, leaked, scores)
    res = PredictResult(
        run=chosen.id,
        dataset=dataset,
        items=len(frame),
        out=None if path is None else str(path),
        columns=list(frame.columns),
        scores=scores,
        extracted=extracted,
        frame=frame,
        skipped=failed,
        unseen=unseen,
        scored=scored,
        leaked=leaked,
        leaked_scored=leaked_scored,
        unleaked_scores=unleaked,
    )
    if scores is not None:
        save_test_scores(ws, res, chosen.record.dataset)
    return res


def leaked_items(
    ws: Workspace, train_dataset: str, test_dataset: str, manifest: Manifest
) -> list[dict[str, str]]:
    """Test items whose content equals a training item's: ``{id, train_id}`` in test order.

    The training hashes are those ``extract`` recorded; test files without a recorded hash are
    hashed now. A training dataset no longer in the workspace leaks nothing we can tell.
    """
    from ..content import item_hashes
    from ..datasets import load_dataset

    try:
        train = item_hashes(ws, train_dataset, load_dataset(ws, train_dataset))
    except DataError:
        return []
    by_content: dict[str, str] = {}
    for item, h in train.items():
        by_content.setdefault(h, item)
    test = item_hashes(ws, test_dataset, manifest, compute=True)
    return [
        {"id": i, "train_id": by_content[test[i]]}
        for i in manifest.ids
        if i in test and test[i] in by_content
    ]


def _leak_scores(
    manifest: Manifest,
    enc: Encoding,
    P: np.ndarray,
    leaked: list[dict[str, str]],
    scores: dict[str, float] | None,
) -> tuple[int, dict[str, float] | None]:
    """How many scored items were leaked, and the scores over the scored items that were not."""
    if not leaked or scores is None:
        return 0, None
    gone = {d["id"] for d in leaked}
    keep = np.array([i not in gone for i in manifest.ids])
    lists = manifest.label_lists()
    scorable = [
        bool(labs) and (not enc.single_label or set(labs) <= set(enc.labels)) for labs in lists
    ]
    n_leaked = sum(1 for ok, k in zip(scorable, keep, strict=True) if ok and not k)
    if not keep.any():
        return n_leaked, None
    rest = Manifest(
        frame=manifest.frame[keep].reset_index(drop=True),
        source=manifest.source,
        name=manifest.name,
    )
    return n_leaked, _scores(rest, enc, P[keep])[0]


def _extract_all(
    ws: Workspace,
    run: Run,
    manifest: Manifest,
    extracted: list[dict[str, Any]],
    progress: bool,
    on_error: str,
) -> list[dict[str, str]]:
    """Extract the test items for every head run under ``run``; the items that failed."""
    from ..runs import load_run

    failed: dict[str, str] = {}
    todo = [run]
    while todo:
        r = todo.pop(0)
        if r.record.kind == "stack":
            todo += [load_run(ws, b) for b in r.record.base_runs]
        elif r.record.kind == "head":
            for f in _ensure_features(ws, r, manifest, extracted, progress, on_error):
                failed.setdefault(f["id"], f["error"])
    return [{"id": i, "error": e} for i, e in failed.items()]


def _without(manifest: Manifest, ids: set[str]) -> Manifest:
    keep = ~manifest.frame["id"].isin(ids)
    if not keep.any():
        raise DataError(f"none of the {len(manifest)} test item(s) could be embedded")
    return Manifest(
        frame=manifest.frame[keep].reset_index(drop=True),
        source=manifest.source,
        name=manifest.name,
        label_col=manifest.label_col,
        id_col=manifest.id_col,
    )


def choose_run(ws: Workspace, ref: str | int | None) -> Run:
    """``ref``'s run, else the most recent stack, else the best-scoring run of the workspace."""
    from ..classify.metrics import rank_runs
    from ..runs import list_runs, load_run

    if ref is not None:
        return load_run(ws, ref)
    runs = list_runs(ws)
    if not runs:
        raise RunError(f"no runs in {ws.root}; fit a head ('sslstack fit-head') or stack first")
    stacks = [r for r in runs if r.record.kind == "stack"]
    if stacks:
        return max(stacks, key=lambda r: (r.record.created, r.number))

    return rank_runs(runs, lambda r: r.record.metric, lambda r: r.record.score)[0]


def predict_run(
    ws: Workspace,
    run: Run,
    manifest: Manifest,
    *,
    extracted: list[dict[str, Any]] | None = None,
    progress: bool = False,
) -> np.ndarray:
    """``(n, n_classes)`` probabilities of ``run`` for the items of ``manifest``, in its order."""
    from ..runs import load_run

    kind = run.record.kind
    enc = encoding_of(run.record)
    if kind == "stack":
        bases = [load_run(ws, b) for b in run.record.base_runs]
        P = np.stack(
            [predict_run(ws, b, manifest, extracted=extracted, progress=progress) for b in bases]
        )
        method = _methods.METHODS[str(run.record.method)]
        combined = method.apply(P, run.record.params, enc)
        return finish(apply_calibration(combined, run.record.calibration, enc), enc)
    if kind == "import":
        return _imported(run, manifest.ids, enc)
    _ensure_features(ws, run, manifest, extracted if extracted is not None else [], progress)
    from ..classify import predict_head
    from ..datasets import manifest_hashes

    keys = manifest_hashes(ws, manifest)
    return np.asarray(predict_head(ws, run, manifest.ids, keys), dtype=np.float64)


def _ensure_features(
    ws: Workspace,
    run: Run,
    manifest: Manifest,
    extracted: list[dict[str, Any]],
    progress: bool,
    on_error: str = "stop",
) -> list[dict[str, str]]:
    """Extract the test items into every store the head run reads (once per store); the items
    that could not be embedded (with ``on_error="skip"``; ``stop`` raises)."""
    from ..embeddings import find_store, store_model
    from ..extract import extract

    failed: list[dict[str, str]] = []
    done = {e["store"] for e in extracted}
    for feat in run.record.features:
        if feat.store in done:
            continue
        store = find_store(str(feat.model), ws, store=feat.store)
        key = store.key
        settings = {k: getattr(key, k) for k in _KEY_SETTINGS}
        model = store_model(store)
        if _is_hub_id(model):
            settings["revision"] = key.revision
        res = extract(
            manifest, model, workspace=ws, progress=progress, on_error=on_error, **settings
        )
        if res.store != store.path.name:
            raise StoreError(
                f"run {run.id} reads store {store.path.name} but extracting the test "
                f"items with the same settings went to {res.store}; the encoder changed since "
                "the run was fitted (revision or local weights) — refit the head"
            )
        if res.failed and on_error != "skip":
            shown = ", ".join(f["id"] for f in res.failed[:5])
            raise DataError(
                f"{len(res.failed)} test item(s) could not be embedded: {shown}; fix or remove "
                "them, or pass --on-error skip to predict the rest"
            )
        failed += res.failed
        done.add(res.store)
        extracted.append(
            {"store": res.store, "model": model, "computed": res.computed, "cached": res.cached}
        )
    return failed


def _is_hub_id(model: str) -> bool:
    from ..extract.resolve import builtin_names

    return model not in builtin_names() and not Path(model).is_absolute()


def _imported(run: Run, ids: list[str], enc: Encoding) -> np.ndarray:
    folder = Path(run.dir) / "test"
    want = set(ids)
    for path in sorted(folder.glob("*.csv")) if folder.exists() else []:
        frame = pd.read_csv(path, dtype={"id": str}, keep_default_na=False)
        if want <= set(frame["id"]):
            frame = frame.set_index("id").loc[ids, list(enc.labels)]
            return frame.to_numpy(dtype=np.float64)
    raise RunError(
        f"imported run {run.id} has no test predictions for these items; import them "
        f"with 'sslstack runs import {run.id} --oof ... --test test.csv'"
    )


def _frame(
    ids: list[str],
    P: np.ndarray,
    enc: Encoding,
    label: bool,
    id_column: str | None,
    columns: list[str] | None,
) -> tuple[pd.DataFrame, list[str]]:
    id_col = id_column or "id"
    if label:
        names = columns or ["label"]
        if len(names) != 1:
            raise ConfigError(f"--columns {','.join(names)}: --label writes one label column")
        if enc.single_label:
            values = [enc.labels[i] for i in P.argmax(axis=1)]
        else:
            values = [
                LABEL_SEP.join(enc.labels[c] for c in np.flatnonzero(row >= 0.5)) for row in P
            ]
        return pd.DataFrame({id_col: ids, names[0]: values}), names
    names = columns or list(enc.labels)
    if len(names) != len(enc.labels):
        raise ConfigError(
            f"--columns names {len(names)} column(s) but the run has {len(enc.labels)} classes "
            f"({', '.join(enc.labels)}), in this order"
        )
    if id_col in names:
        raise ConfigError(f"--id-column {id_col}: also a class column name; pick another")
    frame = pd.DataFrame({id_col: ids})
    for c, name in enumerate(names):
        frame[name] = P[:, c]
    return frame, names


def _validate(
    frame: pd.DataFrame, ids: list[str], enc: Encoding, label: bool, cols: list[str], source: str
) -> None:
    check_ids(frame, frame.columns[0], ids, source)
    if label:
        check_labels(frame, cols[0], enc.labels, single_label=enc.single_label, source=source)
    else:
        check_probabilities(frame, cols, single_label=enc.single_label, source=source)


def _scores(
    manifest: Manifest, enc: Encoding, P: np.ndarray
) -> tuple[dict[str, float] | None, int, dict[str, int]]:
    """Scores on the labeled test items the run can score, their count, and the test labels
    the run never saw (label -> items). Single-label items of an unseen class are left out;
    multi-label items are scored on the run's labels (an unseen label is dropped)."""
    if not manifest.has_labels:
        return None, 0, {}
    lists = manifest.label_lists()
    known = set(enc.labels)
    unseen: dict[str, int] = {}
    for labs in lists:
        for lab in labs:
            if lab not in known:
                unseen[lab] = unseen.get(lab, 0) + 1
    if enc.single_label:
        rows = [i for i, labs in enumerate(lists) if labs and set(labs) <= known]
        kept = [lists[i] for i in rows]
    else:
        rows = [i for i, labs in enumerate(lists) if labs]
        kept = [[lab for lab in lists[i] if lab in known] for i in rows]
        rows, kept = [r for r, k in zip(rows, kept, strict=True) if k], [k for k in kept if k]
    if not rows:
        return None, 0, dict(sorted(unseen.items()))
    y = enc.targets(kept, [manifest.ids[i] for i in rows])
    scores = score_all(y, P[rows], enc.task, enc.positive_index)
    return scores, len(rows), dict(sorted(unseen.items()))
