"""Shared fixtures. ``tiny_model("wavlm-layer")`` -> folder of a tiny random-init encoder saved
with ``save_pretrained`` (see :mod:`tests.tiny_models`), built once per test session."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    from tests.tiny_models import make_tiny_model

    root = tmp_path_factory.mktemp("tiny_models")
    return lambda family: make_tiny_model(family, root)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """The address of a local Ray cluster shared by every test that asks for it (started once:
    about 6 s). Four logical CPUs on any machine: the encoder actors take half a CPU each,
    decoding tasks half, write tasks a quarter, so nothing starves on a two-core CI runner (two
    actors at one CPU each on two cores stall the pipeline: its read tasks never get a CPU). The
    executor joins the initialized cluster in-process; subprocesses join it with ``--address``."""
    ray = pytest.importorskip("ray", reason="the Ray executor needs pip install 'sslstack[ray]'")
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
