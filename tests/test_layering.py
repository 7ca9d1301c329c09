"""The layering, written once: pyproject.toml's import-linter contracts hold for the package,
a lower layer importing a higher one breaks them, and docs/architecture.md lists the same layers
and the same known exceptions."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from importlinter.api import read_configuration

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
MARK = "<!-- layers: checked against pyproject.toml by tests/test_layering.py -->"
LINT = "import sys; from importlinter.cli import lint_imports_command as m; sys.exit(m())"


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over ``root/src``'s sslstack with ``root/pyproject.toml``'s contracts."""
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    args = [sys.executable, "-c", LINT, "--no-cache", "--no-logo", str(root / "pyproject.toml")]
    return subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=300)


def contracts() -> dict[str, dict[str, Any]]:
    config = read_configuration(str(ROOT / "pyproject.toml"))
    return {c["id"]: c for c in config["contracts_options"]}


def documented_layers(text: str) -> list[str]:
    """The fenced block after :data:`MARK`: one layer a line, the layer before two spaces."""
    block = text.split(MARK, 1)[1].split("```", 2)[1]
    lines = [line for line in block.splitlines()[1:] if line.strip()]
    return [re.split(r"\s{2,}", line.strip(), maxsplit=1)[0] for line in lines]


def test_the_package_keeps_its_import_contracts() -> None:
    res = lint(ROOT)
    if res.returncode != 0:
        pytest.fail(res.stdout + res.stderr, pytrace=False)


def test_an_upward_import_or_a_cycle_breaks_the_contracts(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    src = tmp_path / "src" / "sslstack"
    shutil.copytree(ROOT / "src" / "sslstack", src, ignore=shutil.ignore_patterns("__pycache__"))
    with (src / "cache" / "key.py").open("a") as f:  # upward, and a cycle key -> store -> key
        f.write("\nfrom ..ensemble import stack  # noqa: E402, F401\n")
        f.write("from . import store  # noqa: E402, F401\n")
    res = lint(tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "sslstack.cache is not allowed to import sslstack.ensemble" in res.stdout
    assert "sslstack.cache.key -> sslstack.ensemble" in res.stdout
    assert "No cycles are allowed in sslstack.cache." in res.stdout


def test_architecture_md_lists_the_contracts_layers_and_exceptions() -> None:
    text = DOC.read_text()
    assert MARK in text, f"{DOC}: the layer list must follow the line {MARK}"
    assert documented_layers(text) == contracts()["layers"]["layers"]
    ignored = [i for c in contracts().values() for i in c.get("ignore_imports", [])]
    missing = [i for i in ignored if f"`{i}`" not in text]
    assert missing == [], f"{DOC} does not list these known exceptions: {missing}"
