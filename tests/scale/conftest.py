"""The scale-out tests share the session's local Ray cluster (``ray_cluster`` in
``tests/conftest.py``) and run the local executor on one torch thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

ray = pytest.importorskip("ray", reason="the Ray executor tests need pip install 'sslstack[ray]'")


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """The local executor runs on one torch thread, as each encoder actor does here (half a
    CPU): the same kernels in the same order, so the two executors' vectors agree to 1e-6."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
