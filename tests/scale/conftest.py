"""A local Ray cluster shared by the scale-out tests (started once: about 6 s).

Four logical CPUs on any machine: the encoder actors take half a CPU each, decoding tasks half,
write tasks a quarter, so nothing starves on a two-core CI runner (two actors at one CPU each on
two cores stall the pipeline: its read tasks never get a CPU).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

ray = pytest.importorskip("ray", reason="the Ray executor tests need pip install 'sslstack[ray]'")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """The address of a local cluster; the executor joins the initialized one in-process, and
    subprocesses join it with ``--address``."""
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """The local executor runs on one torch thread, as each encoder actor does here (half a
    CPU): the same kernels in the same order, so the two executors' vectors agree to 1e-6."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
