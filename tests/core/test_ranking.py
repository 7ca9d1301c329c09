"""One ranking of runs by score under each run's own metric, for runs ls, predict and report."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from sslstack.classify.metrics import rank_runs, score_order
from sslstack.runs import RunRecord


def _run(rid: str, metric: str, score: float | None) -> Any:
    return SimpleNamespace(
        id=rid, number=int(rid[1:]), record=RunRecord(rid, int(rid[1:]), "head", "d", "binary",
            ["a", "b"], metric=metric, score=score, scores={metric: score}),
    )  # fmt: skip


def test_lower_is_better_metrics_rank_lowest_first_ece_with_bins_included() -> None:
    for metric in ("ece", "ece_10", "log_loss", "brier", "eer"):
        runs = [_run("r1", metric, 0.30), _run("r2", metric, 0.05), _run("r3", metric, None)]
        got = rank_runs(runs, lambda r: r.record.metric, lambda r: r.record.score)
        assert [r.id for r in got] == ["r2", "r1", "r3"], metric
    runs = [_run("r1", "accuracy", 0.3), _run("r2", "accuracy", 0.9)]
    assert rank_runs(runs, lambda r: "accuracy", lambda r: r.record.score)[0].id == "r2"
    assert score_order("no-such-metric", 0.5) == score_order("accuracy", float("nan"))


def test_predict_picks_the_best_run_of_a_lower_is_better_metric(monkeypatch: Any) -> None:
    import importlib

    import sslstack.runs as runs_mod

    predict = importlib.import_module("sslstack.ensemble.predict")

    runs = [_run("r1", "ece_10", 0.30), _run("r2", "ece_10", 0.05)]
    monkeypatch.setattr(runs_mod, "list_runs", lambda ws, dataset=None: runs)
    assert predict.choose_run(SimpleNamespace(root="ws"), None).id == "r2"


def test_report_leaderboard_of_ece_bins_lists_the_best_first() -> None:
    from sslstack.ensemble.report import _leaderboard

    html = _leaderboard([_run("r1", "ece_10", 0.30), _run("r2", "ece_10", 0.05)], "ece_10", "r2")
    assert html.index(">r2<") < html.index(">r1<")


@pytest.mark.parametrize("metric", ["ece_10", "log_loss"])
def test_runs_ls_puts_the_best_run_of_a_lower_is_better_metric_first(
    metric: str, monkeypatch: Any
) -> None:
    import sslstack.runs as runs_mod
    from sslstack.classify.leaderboard import leaderboard

    runs = [_run("r1", metric, 0.30), _run("r2", metric, 0.05)]
    monkeypatch.setattr(runs_mod, "verified_runs", lambda ws, dataset=None: runs)
    assert [r["run"] for r in leaderboard("ws")] == ["r2", "r1"]
