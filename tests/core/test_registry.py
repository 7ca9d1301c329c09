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
