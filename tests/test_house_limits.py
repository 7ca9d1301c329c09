"""The house's size limits over src/sslstack: no module over 450 lines, no function over 80
lines, no function over 8 parameters outside the CLI (``self``/``cls`` not counted; ``*args``
and ``**kwargs`` count one each)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "sslstack"
MAX_MODULE_LINES, MAX_FUNCTION_LINES, MAX_PARAMETERS = 450, 80, 8


def _parameters(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = fn.args
    named = [
        x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs) if x.arg not in ("self", "cls")
    ]
    return len(named) + (a.vararg is not None) + (a.kwarg is not None)


def offenders(root: Path = PACKAGE) -> list[str]:
    """One line per module, function or signature over the limits under ``root``."""
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            out.append(f"{rel}: {text.count(chr(10))} lines (> {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                out.append(f"{rel}:{node.lineno} {node.name}: {lines} lines")
            n = _parameters(node)
            if n > MAX_PARAMETERS and not rel.startswith("cli/"):
                out.append(f"{rel}:{node.lineno} {node.name}: {n} parameters")
    return out


def test_the_limits_are_measured_as_the_house_measures_them(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "cli").mkdir(parents=True)
    params9 = ", ".join(f"a{i}" for i in range(9))
    (pkg / "ok.py").write_text(f"def f(self, {', '.join(f'a{i}' for i in range(8))}):\n    pass\n")
    (pkg / "wide.py").write_text(f"def g({params9}):\n    pass\n\ndef h(a, *b, **c):\n    pass\n")
    (pkg / "cli" / "cmd.py").write_text(f"def c({params9}):\n" + "    x = 1\n" * 80)
    (pkg / "big.py").write_text("x = 1\n" * 451)
    want = ["big.py: 451 lines (> 450)", "cli/cmd.py:1 c: 81 lines", "wide.py:1 g: 9 parameters"]
    assert offenders(pkg) == want


def test_no_module_function_or_signature_is_over_the_house_limits() -> None:
    assert offenders() == []
