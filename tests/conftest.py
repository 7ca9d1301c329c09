"""Shared fixtures. ``tiny_model("wavlm-layer")`` -> folder of a tiny random-init encoder saved
with ``save_pretrained`` (see :mod:`tests.tiny_models`), built once per test session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    from tests.tiny_models import make_tiny_model

    root = tmp_path_factory.mktemp("tiny_models")
    return lambda family: make_tiny_model(family, root)
