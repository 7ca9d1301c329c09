"""The ensemble stage: stack runs, calibrate, predict test data, import and blend predictions,
report.

Example:
    >>> from sslstack.ensemble import stack, predict, report
    >>> res = stack("ws", method="logreg", calibrate="temperature")
    >>> predict("test.csv", workspace="ws", out="submission.csv")
    >>> report("ws", out="report.html")
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .blend import blend
    from .calibrate import CALIBRATORS, calibrate_oof, calibration_scores
    from .importing import import_run
    from .methods import METHODS, greedy_weights
    from .predict import predict
    from .prediction import PredictConfig, PredictResult
    from .report import report
    from .stack import StackConfig, StackResult, run_stack, stack

# Names are imported on first use, so `sslstack --help` and `--version` do not pay for
# scikit-learn, Optuna, pandas or torch (see docs/benchmarks.md, "CLI start-up").
_LAZY = {
    "blend": ".blend",
    "CALIBRATORS": ".calibrate",
    "calibrate_oof": ".calibrate",
    "calibration_scores": ".calibrate",
    "import_run": ".importing",
    "METHODS": ".methods",
    "greedy_weights": ".methods",
    "PredictConfig": ".prediction",
    "PredictResult": ".prediction",
    "predict": ".predict",
    "report": ".report",
    "StackConfig": ".stack",
    "StackResult": ".stack",
    "run_stack": ".stack",
    "stack": ".stack",
}


__getattr__ = lazy_exports(__name__, globals(), _LAZY)


__all__ = [
    "CALIBRATORS",
    "METHODS",
    "PredictConfig",
    "PredictResult",
    "StackConfig",
    "StackResult",
    "blend",
    "calibrate_oof",
    "calibration_scores",
    "greedy_weights",
    "import_run",
    "predict",
    "report",
    "run_stack",
    "stack",
]
