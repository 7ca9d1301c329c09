"""The cache's user commands: export a feature matrix as heads see it, remove a store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sslstack.cli import app
from sslstack.embeddings import export_embeddings, list_stores, load_embeddings, remove_store
from sslstack.errors import StoreError
from tests.classify_synth import make_synth


def test_export_a_concatenation_of_the_datasets_items_only(tmp_path: Path) -> None:
    s = make_synth(tmp_path, n=20, layers=3, extra_ids=5)  # 5 items of another dataset
    out = tmp_path / "x.npz"
    res = export_embeddings("fake", "0+2", "mean+std", out, s.ws, data=s.csv)
    z = np.load(out)
    assert z["ids"].tolist() == s.ids and res["items"] == 20 and res["missing"] == 0
    assert z["labels"].tolist() == s.labels
    parts = [
        load_embeddings("fake", la, p, s.ws, ids=s.ids)[1] for p in ("mean", "std") for la in (0, 2)
    ]
    np.testing.assert_array_equal(z["X"], np.concatenate(parts, axis=1))
    assert res["dim"] == 4 * 8
    mean = export_embeddings("fake", "0..2", "mean", tmp_path / "m.npz", s.ws, data=s.csv)
    ref = np.mean([load_embeddings("fake", la, "mean", s.ws, ids=s.ids)[1] for la in range(3)], 0)
    np.testing.assert_allclose(np.load(tmp_path / "m.npz")["X"], ref)
    assert mean["layer"] == "0..2"
    every = export_embeddings("fake", 1, "mean", tmp_path / "a.npz", s.ws, all_items=True)
    assert every["items"] == 25 and every["dataset"] is None
    with pytest.raises(StoreError, match="no pooling 'max'"):
        export_embeddings("fake", 1, "mean+max", tmp_path / "b.npz", s.ws, data=s.csv)


def test_cache_export_cli_says_what_it_wrote(tmp_path: Path) -> None:
    s = make_synth(tmp_path, n=12, layers=2, extra_ids=3)
    r = CliRunner().invoke(
        app,
        ["cache", "export", "--model", "fake", "--layer", "1", "--pool", "mean+std"]
        + ["--out", str(tmp_path / "e.parquet"), "--data", str(s.csv), "-w", str(s.ws.root)],
    )
    assert r.exit_code == 0, r.output
    assert "12 items of dataset train-" in r.output and "x 16 dims (layer 1, mean+std)" in r.output
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "e.parquet")
    assert table.column("id").to_pylist() == s.ids
    assert table.column("label").to_pylist() == s.labels


def test_cache_rm_dry_run_then_remove(tmp_path: Path) -> None:
    from sslstack.classify import fit_head

    s = make_synth(tmp_path, n=30, layers=2)
    name = s.store.path.name
    plan = remove_store(name, s.ws, dry_run=True)
    assert plan["removed"] is False and plan["items"] == 30 and s.store.path.exists()
    run = fit_head("logreg", "fake", data=s.csv, workspace=s.ws, trials=0, folds=3).run
    with pytest.raises(StoreError, match=rf"read by run\(s\) {run}.*--force"):
        remove_store(name, s.ws)
    r = CliRunner().invoke(
        app, ["cache", "rm", name, "--dry-run", "--force", "-w", str(s.ws.root), "--json"]
    )
    assert r.exit_code == 0, r.output
    assert f"would remove {s.store.path}: 30 items" in r.output.replace("\n", "")
    assert json.loads(r.stdout.strip().splitlines()[-1])["runs"] == [run]
    assert s.store.path.exists()
    r = CliRunner().invoke(app, ["cache", "rm", name, "--force", "-w", str(s.ws.root)])
    assert r.exit_code == 0, r.output
    assert not s.store.path.exists() and list_stores(s.ws) == []
    r = CliRunner().invoke(app, ["cache", "rm", name, "-w", str(s.ws.root)])
    assert r.exit_code == 2 and f"store '{name}' does not exist" in r.output
