"""The store knows nothing above it: ``sslstack.cache`` imports only core modules and itself,
and its modules import each other without a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

CACHE = Path(__file__).resolve().parents[2] / "src" / "sslstack" / "cache"
CORE = {"errors", "workspace", "registry", "parsing"}  # what the store may use from sslstack


def _imports(path: Path) -> set[str]:
    """``sslstack`` modules imported by ``path`` (module level and inside functions), as
    ``cache.x`` for siblings and ``x`` for the package's other modules."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = node.module or ""
            if node.level == 1:
                names = [base] if base else [a.name for a in node.names]
                out |= {f"cache.{n.split('.')[0]}" for n in names}
            else:
                out.add(base.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sslstack."):
            out.add((node.module or "").split(".")[1])
    return out


def test_the_cache_imports_nothing_above_it_and_has_no_cycle() -> None:
    graph = {p.stem: _imports(p) for p in CACHE.glob("*.py") if p.stem != "__init__"}
    above = {m: sorted(i for i in deps if not i.startswith("cache.") and i not in CORE)
             for m, deps in graph.items()}  # fmt: skip
    assert {m: d for m, d in above.items() if d} == {}
    edges = {m: {d[6:] for d in deps if d.startswith("cache.")} for m, deps in graph.items()}
    done: set[str] = set()

    def visit(m: str, path: tuple[str, ...]) -> None:
        assert m not in path, f"import cycle: {' -> '.join((*path, m))}"
        if m in done:
            return
        for d in edges.get(m, ()):
            visit(d, (*path, m))
        done.add(m)

    for m in edges:
        visit(m, ())
