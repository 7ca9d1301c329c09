"""The MLP head: one or two hidden layers in torch, on the CPU or a GPU, tuned by Optuna.

The field's standard head for frozen embeddings (the HEAR benchmark's protocol) is a shallow MLP;
tuning and regularization decide whether it beats a linear probe, so width, depth, dropout,
learning rate, weight decay, input standardization and class weights are in the search space.
The number of epochs is found by early stopping on the inner split of each fold's training part
(:func:`sslstack.classify.cv.fit_fold`, never the validation part), and the refit on the whole
part trains that many epochs.

With ``skip`` (the default), the network starts *as* a logistic regression fitted on the same
rows at the trial's ``C``: a fixed linear path to the logits, the output layer's weights at zero.
Early stopping measures that start as epoch 0, so a trial whose hidden layers only overfit keeps
the logistic regression (0 epochs), and one whose hidden layers help keeps what they add.

Training is seeded through a private ``torch.Generator`` (initialization, shuffling, dropout
masks), never the global one, so folds fitted side by side in threads give the same models as
folds fitted one after another. A fitted model is plain arrays: prediction is numpy, and the
model file is ``safetensors`` with the layout in its metadata (no pickle).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import DataError
from .base import HEADS, Head, balanced_weights, raise_if_expired

MAX_EPOCHS = 100  # an MLP epoch is a pass over the data, not a boosting round: capped lower
PATIENCE = 8  # epochs without a better early-stopping loss before stopping
BATCH = 128
# 1024 wide and two deep, a trial on 3000 x 256 took minutes a fold on two busy cores
WIDTHS = (128, 256, 512)


@dataclass
class MLPModel:
    """Weights and biases of each layer (``w``: (out, in)), the output kind, and the optional
    linear skip from the inputs to the output (``(n_out, in)``)."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    kind: str  # softmax | multisigmoid
    epochs: int  # epochs trained (the early-stopping best when an early-stopping set was given)
    skip: np.ndarray | None = None


def _torch() -> Any:
    import torch

    return torch


class _Net:
    """Linear -> ReLU -> dropout blocks and a linear output, with dropout masks drawn from the
    fit's own generator.

    ``start``: a logistic regression's (coefficients, intercepts) on the same inputs. It becomes
    a fixed linear path from the inputs to the logits, with the output layer's bias set to its
    intercepts and its weights to zero: the untrained network *is* that logistic regression,
    and training learns only what the hidden layers add to it (the skip is not trained and not
    decayed, so its regularization stays the one its ``C`` chose)."""

    def __init__(
        self,
        torch: Any,
        dims: list[int],
        dropout: float,
        gen: Any,
        dev: str,
        start: tuple[np.ndarray, np.ndarray] | None,
    ) -> None:
        self.torch, self.dropout, self.gen = torch, dropout, gen
        self.skip = None
        self.layers = []
        for d_in, d_out in zip(dims[:-1], dims[1:], strict=True):
            w = torch.empty(d_out, d_in, device=dev)
            torch.nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=gen)
            bound = 1.0 / math.sqrt(d_in)
            b = torch.empty(d_out, device=dev).uniform_(-bound, bound, generator=gen)
            self.layers.append((w.requires_grad_(), b.requires_grad_()))
        if start is not None:
            coef, icpt = start
            self.skip = torch.as_tensor(coef, dtype=torch.float32, device=dev)
            w, b = self.layers[-1]
            with torch.no_grad():
                w.zero_()
                b.copy_(torch.as_tensor(icpt, dtype=torch.float32, device=dev))

    def params(self) -> list[Any]:
        return [t for wb in self.layers for t in wb]

    def __call__(self, x: Any, train: bool) -> Any:
        torch = self.torch
        lin = x @ self.skip.T if self.skip is not None else 0.0
        for w, b in self.layers[:-1]:
            x = torch.relu(x @ w.T + b)
            if train and self.dropout > 0:
                keep = torch.rand(x.shape, generator=self.gen, device=x.device) >= self.dropout
                x = x * keep / (1.0 - self.dropout)
        w, b = self.layers[-1]
        return x @ w.T + b + lin

    def arrays(self) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray | None]:
        ws = [w.detach().cpu().numpy().astype(np.float32) for w, _ in self.layers]
        bs = [b.detach().cpu().numpy().astype(np.float32) for _, b in self.layers]
        skip = None if self.skip is None else self.skip.detach().cpu().numpy().astype(np.float32)
        return ws, bs, skip


class MLPHead(Head):
    """A shallow MLP (1-2 hidden ReLU layers, dropout, AdamW), early-stopped on epochs."""

    name = "mlp"
    needs_es = True  # epochs are found by early stopping, like a boosted head's rounds
    standardizes = True
    scales_rounds = False  # a fixed batch size gives the whole part more steps an epoch already
    # its start is a model (the logistic regression), so stopping early is safe, and held-out
    # rows of the training speakers would reward learning those speakers (cv._es_split)
    es_by_group = True
    # a trial costs seconds: each refits, so the search ranks the models a run saves (an
    # early-stopped trial on 85 % of a part scored 0.9757 on FSDD's unseen speakers, its refit
    # 0.9603: the trials ranked other models than the run kept)
    refit_in_trials = True

    def space(self, trial: Any) -> dict[str, Any]:
        return {
            "width": trial.suggest_categorical("width", list(WIDTHS)),
            # 0: no hidden layer, a linear layer on the logistic start (with skip), trained and
            # early-stopped like the others: the search may find the hidden layers do not help
            "depth": trial.suggest_int("depth", 0, 2),
            "dropout": trial.suggest_float("dropout", 0.0, 0.6),
            # below 3e-4 a trial ran 200+ epochs (minutes at width 1024, depth 2) for nothing
            "lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
            # AdamW's decay is decoupled (lr x decay a step): on speaker-grouped FSDD digits
            # (ge2e) 1e-4 scored 0.9073, 0.5 0.9143 and 2.0 0.9140 (docs/classify.md)
            "weight_decay": trial.suggest_float("weight_decay", 1e-4, 3.0, log=True),
            "standardize": trial.suggest_categorical("standardize", [True, False]),
            "class_weight": trial.suggest_categorical("class_weight", ["none", "balanced"]),
            "skip": trial.suggest_categorical("skip", [True, False]),
            # the logistic start's inverse L2 strength (logreg's range); unused without skip
            "C": trial.suggest_float("C", 1e-4, 1e2, log=True),
        }

    def defaults(self) -> dict[str, Any]:
        return {
            "width": 512,
            "depth": 1,
            "dropout": 0.3,
            "lr": 1e-3,
            "weight_decay": 0.5,
            "standardize": True,
            "class_weight": "none",
            "skip": True,
            "C": 1.0,
        }

    def warm_start(self) -> dict[str, Any]:
        # the defaults, so that a tuned study is never below them (as logreg's)
        return self.defaults()

    def gpu_support(self, task: str) -> tuple[bool, str]:
        try:
            ok = bool(_torch().cuda.is_available())
        except ImportError:
            return False, "torch is not installed"
        return (True, "") if ok else (False, "torch sees no CUDA device")

    def fit(self, x, y, params, ctx, es=None):
        torch = _torch()
        dev = "cuda" if ctx.device == "cuda" else "cpu"
        if dev == "cpu":
            torch.set_num_threads(max(1, ctx.threads))
        gen = torch.Generator(device=dev).manual_seed(int(ctx.seed))
        multilabel = ctx.task == "multilabel"
        dims = [x.shape[1]] + [int(params["width"])] * int(params["depth"]) + [ctx.n_out]
        start = _logistic_start(x, y, params, ctx) if params.get("skip", False) else None
        net = _Net(torch, dims, float(params["dropout"]), gen, dev, start)
        opt = torch.optim.AdamW(
            net.params(), lr=float(params["lr"]), weight_decay=float(params["weight_decay"])
        )
        loss_fn = _loss(torch, y, params, multilabel, dev)
        xt = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device=dev)
        yt = _targets(torch, y, multilabel, dev)
        held = None
        if es is not None and len(es[1]):
            held = (torch.as_tensor(es[0], dtype=torch.float32, device=dev),
                    _targets(torch, es[1], multilabel, dev))  # fmt: skip
        # started from a logistic regression, epoch 0 is a model already: early stopping may
        # keep it, and a refit told 0 epochs returns it; a random start trains one at least
        first = 0 if start is not None else 1
        epochs = max(first, min(ctx.max_rounds, MAX_EPOCHS))
        best, best_loss, best_state, since = 0, math.inf, None, 0
        if held is not None and start is not None:
            best_loss, best_state = _held_loss(torch, net, loss_fn, held), net.arrays()
        for epoch in range(1, epochs + 1):
            _epoch(torch, net, opt, loss_fn, xt, yt, gen)
            if held is None:
                best = epoch
            else:
                val = _held_loss(torch, net, loss_fn, held)
                if val < best_loss - 1e-6:
                    best, best_loss, best_state, since = epoch, val, net.arrays(), 0
                else:
                    since += 1
            if since >= PATIENCE or ctx.stop_boosting():
                break
        raise_if_expired(ctx)
        # a deadline passed before the first epoch keeps the one that ran (or the start)
        ws, bs, skip = best_state if best_state is not None else net.arrays()
        return MLPModel(ws, bs, "multisigmoid" if multilabel else "softmax", best, skip)

    def rounds_used(self, model):
        return int(model.epochs)

    def predict(self, model, x, ctx):
        return mlp_proba(model, x)

    def save(self, model, folder, stem):
        from safetensors.numpy import save_file

        name = f"{stem}.mlp.safetensors"
        tensors = {f"w{i}": w for i, w in enumerate(model.weights)}
        tensors.update({f"b{i}": b for i, b in enumerate(model.biases)})
        if model.skip is not None:
            tensors["skip"] = model.skip
        meta = {"kind": model.kind, "layers": str(len(model.weights)), "epochs": str(model.epochs)}
        # safetensors writes an array's memory as is: a Fortran-ordered one (sklearn's
        # coefficients can be) would be read back transposed in effect
        tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        save_file(tensors, str(folder / name), metadata=meta)
        return name

    def load(self, folder, name):
        from safetensors import safe_open

        with safe_open(str(folder / name), framework="np") as f:
            meta = f.metadata() or {}
            n = int(meta.get("layers", "0"))
            ws = [f.get_tensor(f"w{i}") for i in range(n)]
            bs = [f.get_tensor(f"b{i}") for i in range(n)]
            skip = f.get_tensor("skip") if "skip" in f.keys() else None  # noqa: SIM118
        if not n or meta.get("kind") not in ("softmax", "multisigmoid"):
            raise DataError(
                f"{folder / name}: not an MLP model of sslstack (metadata {json.dumps(meta)}); "
                "fit the run again"
            )
        return MLPModel(ws, bs, str(meta["kind"]), int(meta.get("epochs", "0")), skip)


def mlp_proba(model: MLPModel, x: np.ndarray) -> np.ndarray:
    """Probabilities of ``model`` on ``x`` (numpy: no torch needed to predict)."""
    h = np.asarray(x, dtype=np.float32)
    for w, b in zip(model.weights[:-1], model.biases[:-1], strict=True):
        h = np.maximum(h @ w.T + b, 0.0)
    z = (h @ model.weights[-1].T + model.biases[-1]).astype(np.float64)
    if model.skip is not None:
        z += np.asarray(x, dtype=np.float32) @ model.skip.T
    if model.kind == "multisigmoid":
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _held_loss(torch: Any, net: _Net, loss_fn: Any, held: tuple[Any, Any]) -> float:
    with torch.no_grad():
        return float(loss_fn(net(held[0], False), held[1]))


def _logistic_start(
    x: np.ndarray, y: np.ndarray, params: dict[str, Any], ctx: Any
) -> tuple[np.ndarray, np.ndarray]:
    """The logistic regression (``C``, ``class_weight`` of the trial) on the rows the MLP fits,
    as softmax (or per-label sigmoid) logits: a binary fit's one logit becomes two."""
    from .logreg import LogRegHead

    lin_params = {
        "C": float(params.get("C", 1.0)),
        "class_weight": params.get("class_weight", "none"),
    }
    lin = LogRegHead().fit(x, y, lin_params, ctx)
    coef, icpt = lin.coef, lin.intercept
    if lin.kind == "sigmoid":
        coef = np.vstack([np.zeros_like(coef), coef])
        icpt = np.concatenate([np.zeros(1), icpt])
    return coef, icpt


def _targets(torch: Any, y: np.ndarray, multilabel: bool, dev: str) -> Any:
    if multilabel:
        return torch.as_tensor(np.asarray(y, dtype=np.float32), device=dev)
    return torch.as_tensor(np.asarray(y, dtype=np.int64), device=dev)


def _loss(torch: Any, y: np.ndarray, params: dict[str, Any], multilabel: bool, dev: str) -> Any:
    """Cross-entropy (softmax or per-label sigmoid), class-weighted when asked."""
    balanced = params.get("class_weight", "none") == "balanced"
    if multilabel:
        pos_weight = None
        if balanced:
            pos = np.asarray(y, dtype=np.float64).sum(axis=0)
            ratio = np.clip((len(y) - pos) / np.maximum(pos, 1.0), 1.0, 100.0)
            pos_weight = torch.as_tensor(ratio, dtype=torch.float32, device=dev)
        return torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    weight = None
    if balanced:
        k = int(np.max(y)) + 1
        per_class = np.ones(k)
        w = balanced_weights(y)
        per_class[np.asarray(y, dtype=np.int64)] = w  # every row of a class has its weight
        weight = torch.as_tensor(per_class, dtype=torch.float32, device=dev)
    return torch.nn.CrossEntropyLoss(weight=weight)


def _epoch(torch: Any, net: _Net, opt: Any, loss_fn: Any, x: Any, y: Any, gen: Any) -> None:
    """One pass over the rows in a seeded order, in mini-batches."""
    order = torch.randperm(len(x), generator=gen, device=x.device)
    for start in range(0, len(x), BATCH):
        idx = order[start : start + BATCH]
        if len(idx) < 2 and start:  # a last batch of one row: its gradient is all noise
            continue
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x[idx], True), y[idx]).backward()
        opt.step()


HEADS.register(MLPHead.name, MLPHead())
