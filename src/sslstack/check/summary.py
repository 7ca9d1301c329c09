"""``check``'s findings as rows (check, finding, details) for the CLI table and the HTML report,
built from the saved dictionary so both show the same thing."""

from __future__ import annotations

import html
from typing import Any

from ..workspace import Workspace, read_json

Row = tuple[str, str, str]


def _sets(sets: list[list[str]]) -> str:
    return "; ".join(" = ".join(s[:3]) + (" …" if len(s) > 3 else "") for s in sets[:3])


def _pairs(pairs: list[dict[str, Any]], key: str | None = None) -> str:
    return "; ".join(
        f"{p['id']} = {p['train_id']}" + (f" ({p[key]:.3f})" if key else "") for p in pairs[:3]
    )


def summary_rows(found: dict[str, Any]) -> list[Row]:
    """The findings of a ``check`` result dictionary, one row each."""
    ex = found["exact"]
    rows: list[Row] = [
        (
            "exact duplicates in train",
            f"{ex['within_train']['sets']} set(s)",
            _sets(ex["within_train"]["examples"]),
        )
    ]
    if found.get("test"):
        rows.append(
            (
                "exact duplicates in test",
                f"{ex['within_test']['sets']} set(s)",
                _sets(ex["within_test"]["examples"]),
            )
        )
        rows.append(
            (
                "test items equal to a training item",
                f"{ex['across']['items']} of {found['items']['test']}",
                _pairs(ex["across"]["examples"]),
            )
        )
    for n in found.get("near", []):
        rows.append(
            (
                f"near duplicates, {n['encoder']} layer {n['layer']}",
                f"{n['pairs']} pair(s) with cosine >= {n['threshold']:g}",
                _pairs(n["examples"], "cosine"),
            )
        )
    for s in found.get("shift", []):
        feats = ", ".join(f"{f['feature']} ({f['diff']:+.2f})" for f in s["features"][:3])
        least = ", ".join(d["id"] for d in s["least_like_train"][:3])
        layers = ""
        if len(s["layers"]) > 1:
            layers = (
                "layers "
                + ", ".join(f"{d['layer']} ({d['auc']:.2f})" for d in s["layers"][:3])
                + "; "
            )
        rows.append(
            (
                f"shift, {s['encoder']}",
                f"AUC {s['auc']:.3f} ± {s.get('se', 0):.3f}: {s['verdict']}",
                f"{layers}features of layer {s['layer']}: {feats}; least like training: {least}",
            )
        )
    rows += _label_rows(found.get("labels") or {}, bool(found.get("test")))
    return rows


def _label_rows(lab: dict[str, Any], has_test: bool) -> list[Row]:
    if not lab:
        return []
    small = lab.get("small", [])
    rows: list[Row] = [
        (
            f"classes with fewer items than {lab['folds']} folds",
            str(len(small)),
            ", ".join(f"{c['label']} ({c['items']})" for c in small[:10]),
        )
    ]
    if has_test:
        only = lab.get("test_only", [])
        rows.append(
            (
                "classes only in test",
                str(len(only)),
                ", ".join(f"{c['label']} ({c['items']})" for c in only[:10]),
            )
        )
    noise = lab.get("noise")
    if noise is None:
        rows.append(("label-noise candidates", "-", "no single-label run yet: fit a head"))
    else:
        shown = "; ".join(
            f"{d['id']}: {d['label']} -> {d['predicted']} ({d['p_predicted']:.2f})"
            for d in noise["items"][:3]
        )
        rows.append((f"label-noise candidates (run {noise['run']})", str(noise["count"]), shown))
    return rows


def check_section(ws: Workspace, dataset: str | None) -> str:
    """The HTML section of the dataset's last ``check`` (empty when it was never checked)."""
    if not dataset:
        return ""
    path = ws.dataset_dir(dataset) / "check.json"
    if not path.exists():
        return ""
    found = read_json(path)
    e = html.escape
    body = "".join(
        f"<tr><td>{e(a)}</td><td>{e(b)}</td><td>{e(c)}</td></tr>" for a, b, c in summary_rows(found)
    )
    notes = "".join(f"<p class=muted>{e(n)}</p>" for n in found.get("notes", []))
    return (
        f"<h2>Leakage, shift and labels</h2><p class=muted>sslstack check: train "
        f"{e(found['train'])}, test {e(str(found.get('test') or 'none'))}</p>"
        f"<table><tr><th>check</th><th>finding</th><th>details</th></tr>{body}</table>{notes}"
    )


__all__ = ["check_section", "summary_rows"]
