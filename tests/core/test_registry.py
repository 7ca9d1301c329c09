"""The one registry shape: register, refuse duplicates, list names, one error for unknown names."""

from __future__ import annotations

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
    from sslstack.classify.folds import SPLITTERS
    from sslstack.classify.heads import HEADS
    from sslstack.classify.metrics import METRICS
    from sslstack.ensemble.calibrate import CALIBRATORS
    from sslstack.ensemble.methods import METHODS
    from sslstack.extract import logmel  # noqa: F401  (registers the built-ins)
    from sslstack.extract.base import BUILTINS
    from sslstack.extract.families import FAMILIES
    from sslstack.extract.pooling import POOLINGS

    return {
        "families": FAMILIES, "builtins": BUILTINS, "poolings": POOLINGS, "metrics": METRICS,
        "splitters": SPLITTERS, "heads": HEADS, "stack methods": METHODS,
        "calibrators": CALIBRATORS,
    }  # fmt: skip


@pytest.mark.parametrize("which", list(_registries()))
def test_every_registry_refuses_a_duplicate_and_names_the_choices(which: str) -> None:
    reg = _registries()[which]
    assert isinstance(reg, Registry) and reg.names()
    first = reg.names()[0]
    with pytest.raises(DuplicateNameError):
        reg.register(first, reg[first])
    with pytest.raises(Exception, match=", ".join(reg.names()[:2])):
        reg["no-such-entry"]


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
