"""The heads: one module per head, each registering itself in ``HEADS``.

:mod:`.base` holds the contract (:class:`Head`, :class:`FitContext`) and the registry;
:mod:`.logreg`, :mod:`.xgb`, :mod:`.catboost`, :mod:`.lgbm` and :mod:`.mlp` one head each, with
its search space (``Head.space``) beside it. Adding a head is one module here, imported below;
the contract suite (``tests/classify/test_head_contract.py``) then covers it without an edit.
Models are saved in safe native formats: logistic coefficients in ``.npz``, XGBoost ``.ubj``,
CatBoost ``.cbm``, LightGBM's text models in ``.lgbm.json``, the MLP's weights in
``.mlp.safetensors``.
"""

from .base import (
    DEFAULT_MAX_ROUNDS,
    EARLY_STOPPING,
    HEADS,
    FitContext,
    Head,
    balanced_weights,
    class_weights,
    get_head,
    raise_if_expired,
)

# registration order is the order of the CLI's choices
from .logreg import LinearModel, LogRegHead  # isort: skip
from .xgb import XGBHead  # isort: skip
from .catboost import CatBoostHead  # isort: skip
from .lgbm import LGBMHead, LGBMModel  # isort: skip
from .mlp import MLPHead  # isort: skip

__all__ = [
    "DEFAULT_MAX_ROUNDS",
    "EARLY_STOPPING",
    "HEADS",
    "CatBoostHead",
    "FitContext",
    "Head",
    "LGBMHead",
    "LGBMModel",
    "LinearModel",
    "LogRegHead",
    "MLPHead",
    "XGBHead",
    "balanced_weights",
    "class_weights",
    "get_head",
    "raise_if_expired",
]
