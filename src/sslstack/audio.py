"""Decoding (soundfile), down-mixing and resampling (soxr); cropping and streamed windows.

Nothing here knows about encoders: it turns a file into float32 mono at a requested rate.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import numpy as np
import soundfile as sf
import soxr

from .audio_checks import check_container, check_samples
from .errors import AudioError

_BLOCK_SECONDS = 60.0


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-1 of the file's bytes: the content half of an item's cache key."""
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def audio_duration(path: str | os.PathLike[str]) -> float:
    """Duration in seconds from the header alone (0.0 when unreadable: decoding will say why)."""
    try:
        info = sf.info(str(path))
    except Exception:
        return 0.0
    return float(info.frames) / float(info.samplerate) if info.samplerate else 0.0


def _to_mono(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1, dtype=np.float32) if x.ndim == 2 else x.astype(np.float32, copy=False)


def load_audio(
    path: str | os.PathLike[str],
    sample_rate: int,
    *,
    max_seconds: float | None = None,
    crop: str = "start",
) -> np.ndarray:
    """Decode a whole file to float32 mono at ``sample_rate``, optionally cropped.

    Args:
        path: audio file (wav, flac, ogg/opus, mp3, … as libsndfile reads them).
        sample_rate: target rate; soxr resamples when the file's rate differs.
        max_seconds: crop longer clips to this many seconds.
        crop: ``"start"`` keeps the beginning, ``"center"`` the middle.

    Raises:
        AudioError: the file cannot be decoded or holds no samples.
    """
    check_container(path)  # what libsndfile and mpg123 read silently (sslstack.audio_checks)
    try:
        with sf.SoundFile(str(path)) as fh:
            sr = fh.samplerate
            start, frames = 0, fh.frames
            if max_seconds is not None and frames > max_seconds * sr:
                keep = int(round(max_seconds * sr))
                start = (frames - keep) // 2 if crop in ("center", "centre") else 0
                frames = keep
            fh.seek(start)
            x = fh.read(frames, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, ValueError, OSError) as e:
        raise AudioError(f"{path}: cannot decode audio ({e})") from e
    if x.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no audio samples")
    check_samples(path, x)
    y = _to_mono(x)
    if sr != sample_rate:
        y = soxr.resample(y, sr, sample_rate, quality="HQ").astype(np.float32, copy=False)
    return y


def window_starts(duration: float, window: float, hop: float) -> list[float]:
    """Window start times covering ``duration``; the last window may be shorter."""
    starts, s = [], 0.0
    while True:
        starts.append(round(s, 6))
        if s + window >= duration - 1e-9:
            return starts
        s += hop


def iter_windows(
    path: str | os.PathLike[str], sample_rate: int, window: float, hop: float
) -> Iterator[tuple[float, np.ndarray]]:
    """Stream ``(start_seconds, samples)`` windows of a file of any length.

    The file is decoded and resampled block by block, so memory is bounded by the window and
    block sizes, never by the file's length.
    """
    win, step = int(round(window * sample_rate)), int(round(hop * sample_rate))
    if win <= 0 or step <= 0:
        raise AudioError(f"{path}: --window and --hop must be positive")
    check_container(path)
    try:
        fh = sf.SoundFile(str(path))
    except (RuntimeError, sf.LibsndfileError, OSError) as e:
        raise AudioError(f"{path}: cannot decode audio ({e})") from e
    with fh:
        sr = fh.samplerate
        if fh.frames == 0:
            raise AudioError(f"{path}: the file holds no audio samples")
        stream = (
            soxr.ResampleStream(sr, sample_rate, 1, dtype="float32", quality="HQ")
            if sr != sample_rate
            else None
        )
        buf = np.zeros(0, dtype=np.float32)
        offset = 0  # absolute sample index (target rate) of buf[0]
        next_start = 0
        block = max(int(_BLOCK_SECONDS * sr), 1)
        done = False
        while not done:
            try:
                x = fh.read(block, dtype="float32", always_2d=True)
            except (RuntimeError, sf.LibsndfileError) as e:
                raise AudioError(f"{path}: cannot decode audio ({e})") from e
            done = x.shape[0] < block
            check_samples(path, x)
            y = _to_mono(x)
            if stream is not None:
                y = stream.resample_chunk(y, last=done)
            buf = np.concatenate([buf, y])
            end = offset + len(buf)
            while next_start + win <= end or (done and next_start < end):
                seg = buf[next_start - offset : next_start - offset + win]
                yield next_start / sample_rate, seg.copy()
                if next_start + win >= end and done:
                    return
                next_start += step
            drop = min(next_start - offset, len(buf))
            buf, offset = buf[drop:], offset + drop
