"""Each encoder's default poolings (``--pool`` not given): what its spec declares, else mean."""

from __future__ import annotations

from pathlib import Path

from sslstack import extract
from sslstack.cache import Store
from sslstack.extract.base import EncoderSpec
from sslstack.extract.config import default_pools
from sslstack.extract.logmel import logmel_spec
from tests.audio_fixtures import write_dataset


def test_logmel_extracts_mean_std_max_by_default(tmp_path: Path) -> None:
    man = write_dataset(tmp_path / "d", 3, sr=8000)
    res = extract(man, "logmel", workspace=tmp_path / "ws")
    assert Store(Path(res.store_path)).key.pools == ("mean", "std", "max")
    # asked for, one pooling is what is stored
    res = extract(man, "logmel", workspace=tmp_path / "ws", pools=("mean",))
    assert Store(Path(res.store_path)).key.pools == ("mean",)


def test_an_encoder_that_declares_none_gets_mean() -> None:
    assert default_pools(logmel_spec()) == ("mean", "std", "max")
    bare = EncoderSpec("x", "r", 16000, "x", lambda *a, **k: None)  # type: ignore[arg-type,return-value]
    assert default_pools(bare) == ("mean",)
