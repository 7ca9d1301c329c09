"""The classify stage: heads tuned by Optuna under shared folds on cached embeddings.

It never loads an encoder: it reads embeddings from the store by item id.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .apply import predict_head
    from .fit import FitConfig, FitResult, fit_head
    from .folds import Folds, get_folds, load_folds
    from .heads import HEADS
    from .labels import LabelEncoding, infer_encoding
    from .metrics import METRICS, Metric, get_metric, metric_names, score_all
    from .probing import ProbeConfig, ProbeResult, probe

# Names are imported on first use, so `sslstack --help` and `--version` do not pay for
# scikit-learn, Optuna, pandas or torch (see docs/benchmarks.md, "CLI start-up").
_LAZY = {
    "FitConfig": ".fit",
    "FitResult": ".fit",
    "fit_head": ".fit",
    "predict_head": ".apply",
    "Folds": ".folds",
    "get_folds": ".folds",
    "load_folds": ".folds",
    "HEADS": ".heads",
    "LabelEncoding": ".labels",
    "infer_encoding": ".labels",
    "METRICS": ".metrics",
    "Metric": ".metrics",
    "get_metric": ".metrics",
    "metric_names": ".metrics",
    "score_all": ".metrics",
    "ProbeConfig": ".probing",
    "ProbeResult": ".probing",
    "probe": ".probing",
}


__getattr__ = lazy_exports(__name__, globals(), _LAZY)


__all__ = [
    "HEADS",
    "METRICS",
    "FitConfig",
    "FitResult",
    "Folds",
    "LabelEncoding",
    "Metric",
    "ProbeConfig",
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
