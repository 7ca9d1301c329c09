"""The ensemble stage: stack runs, calibrate, predict test data, import and blend predictions,
report.

Example:
    >>> from sslstack.ensemble import stack, predict, report
    >>> res = stack("ws", method="logreg", calibrate="temperature")
    >>> predict("test.csv", workspace="ws", out="submission.csv")
    >>> report("ws", out="report.html")
"""

from .blend import blend
from .calibrate import CALIBRATORS, calibrate_oof, calibration_scores
from .importing import import_run
from .methods import METHODS, greedy_weights
from .predict import PredictResult, predict
from .report import report
from .stack import StackConfig, StackResult, run_stack, stack

__all__ = [
    "CALIBRATORS",
    "METHODS",
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
