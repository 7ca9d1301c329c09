"""CatBoost: oblivious trees, plain boosting; models saved as ``.cbm``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import MissingDependencyError
from .base import EARLY_STOPPING, HEADS, FitContext, Head, raise_if_expired


class _CatDeadline:
    """A CatBoost callback that stops training when ``ctx`` says so (CPU only)."""

    def __init__(self, ctx: FitContext) -> None:
        self.ctx = ctx

    def after_iteration(self, info: Any) -> bool:
        return not self.ctx.stop_boosting()


CAT_PARAMS = ("depth", "learning_rate", "l2_leaf_reg", "border_count", "rsm")


class CatBoostHead(Head):
    name = "catboost"
    needs_es = True
    trees = True

    def space(self, trial: Any) -> dict[str, Any]:
        return {
            # a MultiClass tree's cost grows with depth x columns x classes: 50 classes on
            # 1360 x 192 took 0.58 s a round at depth 6 on all columns, 0.085 s with rsm 0.2
            # (2 busy cores, docs/benchmarks.md), so the column sample and depth are bounded
            "depth": trial.suggest_int("depth", 3, 7),
            "learning_rate": trial.suggest_float("learning_rate", 0.05, 0.3, log=True),
            "l2_leaf_reg": trial.suggest_float("l2_leaf_reg", 1.0, 10.0, log=True),
            "border_count": trial.suggest_categorical("border_count", [32, 64, 128]),
            "rsm": trial.suggest_float("rsm", 0.05, 0.6, log=True),
            "class_weight": trial.suggest_categorical("class_weight", ["none", "balanced"]),
        }

    def defaults(self) -> dict[str, Any]:
        return {"depth": 6, "l2_leaf_reg": 3.0}  # learning rate: CatBoost's own choice

    def options(self, params: dict[str, Any], ctx: FitContext) -> dict[str, Any]:
        """CatBoostClassifier's keyword arguments for ``params`` under ``ctx``."""
        loss = {"binary": "Logloss", "multilabel": "MultiLogloss"}.get(ctx.task, "MultiClass")
        if ctx.task == "multiclass" and ctx.n_out == 2:
            loss = "Logloss"
        gpu = ctx.device == "cuda"
        kw = {k: v for k, v in params.items() if k in CAT_PARAMS and not (gpu and k == "rsm")}
        if params.get("class_weight") == "balanced" and ctx.task != "multilabel":
            kw["auto_class_weights"] = "Balanced"
        return {
            "iterations": ctx.max_rounds,
            "loss_function": loss,
            "random_seed": ctx.seed,
            "thread_count": ctx.threads,
            "task_type": "GPU" if gpu else "CPU",
            # ordered boosting costs ~15 % more a round for nothing on dense embeddings
            "boosting_type": "Plain",
            "verbose": False,
            "allow_writing_files": False,
            **kw,
        }

    def fit(self, x, y, params, ctx, es=None):
        try:
            from catboost import CatBoostClassifier
        except ImportError as e:
            raise MissingDependencyError("catboost", "the catboost head") from e
        model = CatBoostClassifier(**self.options(params, ctx))
        kw: dict[str, Any] = (
            {"eval_set": (es[0], es[1]), "early_stopping_rounds": EARLY_STOPPING} if es else {}
        )
        if ctx.device != "cuda":  # CatBoost takes user callbacks on the CPU only
            kw["callbacks"] = [_CatDeadline(ctx)]
        model.fit(x, y, **kw)
        raise_if_expired(ctx)
        return model

    def warm_start(self) -> dict[str, Any]:
        # 50 classes, 2000 x 192 (benchmarks/heads.py --autogluon synth50): 0.688 out-of-fold
        # accuracy in 182 s for the 5 folds of 1000 rounds on one thread of a busy machine
        return {
            "depth": 4,
            "learning_rate": 0.2,
            "l2_leaf_reg": 3.0,
            "border_count": 32,
            "rsm": 0.2,
            "class_weight": "none",
        }

    def fast_start(self) -> dict[str, Any]:
        return {"learning_rate": 0.3, "rsm": 0.1}

    def gpu_support(self, task: str) -> tuple[bool, str]:
        if task == "multilabel":
            return False, "CatBoost's MultiLogloss runs on the CPU only"
        try:
            from catboost.utils import get_gpu_device_count
        except ImportError:
            return False, "catboost is not installed"
        if get_gpu_device_count() < 1:
            return False, "CatBoost sees no CUDA device"
        return True, ""

    def rounds_used(self, model):
        best = model.get_best_iteration()
        return int(best) + 1 if best is not None else int(model.tree_count_)

    def predict(self, model, x, ctx):
        return np.asarray(model.predict_proba(x), dtype=np.float64)

    def save(self, model, folder, stem):
        name = f"{stem}.cbm"
        model.save_model(str(folder / name))
        return name

    def load(self, folder, name):
        from catboost import CatBoostClassifier

        return CatBoostClassifier().load_model(str(folder / name))


HEADS.register(CatBoostHead.name, CatBoostHead())
