"""The one registry shape: register, refuse duplicates, list names, one error for unknown names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sslstack.errors import ConfigError, EncoderError
from sslstack.registry import DuplicateNameError, Registry


def test_register_by_call_and_decorator_in_order() -> None:
    reg: Registry[object] = Registry("thing")
    reg.register("a", 1)

    @reg.register("b")
    def b() -> int:
        return 2

    assert reg.names() == ["a", "b"] and reg["a"] == 1 and reg["b"] is b
    assert "a" in reg and "c" not in reg and len(reg) == 2 and dict(reg) == {"a": 1, "b": b}


def test_a_duplicate_name_is_refused_and_the_first_entry_kept() -> None:
    reg: Registry[int] = Registry("head")
    reg.register("xgb", 1)
    with pytest.raises(DuplicateNameError, match="head 'xgb' is registered already"):
        reg.register("xgb", 2)
    assert reg["xgb"] == 1
    with pytest.raises(DuplicateNameError):
        reg["xgb"] = 3
    reg["lgbm"] = 4
    del reg["lgbm"]
    assert reg.names() == ["xgb"]


def test_an_unknown_name_names_the_flag_and_the_choices() -> None:
    reg: Registry[int] = Registry("family", flag="--model", error=EncoderError)
    reg.register("wavlm", 1)
    reg.register("hubert", 2)
    with pytest.raises(
        EncoderError, match=r"^--model bert: unknown family; choose from wavlm, hubert$"
    ):
        reg["bert"]
    assert reg.get("bert", None) is None
    with pytest.raises(ConfigError):
        Registry("pool")["max"]


def _registries() -> dict[str, Registry]:
    """Every registry of the package, by the module-level name it is declared under."""
    import importlib

    found = {}
    for path in sorted(SRC.rglob("*.py")):
        for name in re.findall(r"^([A-Z_]+): Registry\[", path.read_text(), re.M):
            module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
            found[name] = getattr(importlib.import_module(module.removesuffix(".__init__")), name)
    return found


SRC = Path(__file__).resolve().parents[2] / "src" / "sslstack"
REGISTRIES = _registries()


def test_every_registry_is_found() -> None:
    assert {
        "FAMILIES", "VISION_FAMILIES", "BUILTINS", "RUNTIMES", "POOLINGS", "SOURCES", "EXECUTORS",
        "METRICS", "SPLITTERS", "HEADS", "METHODS", "CALIBRATORS",
    } <= set(REGISTRIES)  # fmt: skip


@pytest.mark.parametrize("which", list(REGISTRIES))
def test_every_registry_refuses_a_duplicate_and_has_the_one_unknown_name_message(
    which: str,
) -> None:
    reg = REGISTRIES[which]
    assert isinstance(reg, Registry) and reg.names()
    first = reg.names()[0]
    with pytest.raises(DuplicateNameError):
        reg.register(first, reg[first])
    for name in ("no-such-entry", None):
        with pytest.raises(reg.error) as e:
            reg.get(name)
        assert str(e.value) == f"{reg.flag} {name}: unknown {reg.kind}; choose from " + ", ".join(
            [*reg.names(), *reg.more]
        )


def test_no_module_words_its_own_unknown_name_message() -> None:
    """Unknown names are the registries' to refuse: no `if name not in REGISTRY: raise` wrapper.
    (classify/heads.py's get_head goes with the heads package of issue 23.)"""
    wrapper = re.compile(rf"if \w+ not in ({'|'.join(REGISTRIES)}):\n\s+raise", re.M)
    offenders = {
        str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if wrapper.search(p.read_text())
    }
    assert offenders <= {"classify/heads.py"}, offenders


LOADED: Registry[int] = Registry("thing", load=("tests.core._registry_load",))


def test_load_and_fallback() -> None:
    """``load=`` modules register on first read; ``fallback=`` makes names on demand, and
    ``more=`` lists them."""
    import sys

    sys.modules.pop("tests.core._registry_load", None)
    assert LOADED._entries == {} and LOADED.names() == ["loaded"] and LOADED["loaded"] == 7
    made: Registry[int] = Registry(
        "size", fallback=lambda n: int(n[5:]) if n.startswith("size_") else None, more=["size_<n>"]
    )
    made.register("one", 1)
    assert made["size_12"] == 12 and "size_12" not in made and made.names() == ["one"]
    with pytest.raises(ConfigError, match=r"^--size big: unknown size; choose from one, size_<n>$"):
        made["big"]


def test_every_encoder_family_has_a_tiny_test_model() -> None:
    """A new family can not go untested: tests/tiny_models.py must build it."""
    from sslstack.extract.families import FAMILIES
    from tests.tiny_models import VARIANTS

    covered = {v.rsplit("-", 1)[0] if v.endswith(("-group", "-layer")) else v for v in VARIANTS}
    assert set(FAMILIES.names()) <= covered, set(FAMILIES.names()) - covered


def test_a_submodule_never_shadows_the_function_its_package_exports() -> None:
    """``sslstack.ensemble.predict`` (a module) imported before the ``predict`` function was
    first used made ``from sslstack.ensemble import predict`` give the module."""
    import subprocess
    import sys

    code = (
        "import importlib, inspect\n"
        "importlib.import_module('sslstack.ensemble.predict')\n"
        "importlib.import_module('sslstack.ensemble.stack')\n"
        "from sslstack.ensemble import predict, stack\n"
        "assert inspect.isfunction(predict) and inspect.isfunction(stack), (predict, stack)\n"
        "from sslstack.ensemble.predict import predict as p2\n"
        "assert p2 is predict\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
