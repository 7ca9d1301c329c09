"""The classify stage: heads tuned by Optuna under shared folds on cached embeddings.

It never loads an encoder: it reads embeddings from the store by item id.
"""

from .fit import FitResult, fit_head, predict_head
from .folds import Folds, get_folds, load_folds
from .heads import HEADS
from .labels import LabelEncoding, infer_encoding
from .metrics import METRICS, Metric, get_metric, metric_names, score_all
from .probe import ProbeResult, probe

__all__ = [
    "HEADS",
    "METRICS",
    "FitResult",
    "Folds",
    "LabelEncoding",
    "Metric",
    "ProbeResult",
    "fit_head",
    "get_folds",
    "get_metric",
    "infer_encoding",
    "load_folds",
    "metric_names",
    "predict_head",
    "probe",
    "score_all",
]
