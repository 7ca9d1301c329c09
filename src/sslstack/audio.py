"""Decoding (soundfile), down-mixing and resampling (soxr); cropping and streamed windows.

Nothing here knows about encoders: it turns a file into float32 mono at a requested rate.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import soundfile as sf
import soxr

from .audio_checks import check_container, check_samples
from .errors import AudioError

_BLOCK_SECONDS = 60.0


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
            start, frames = _crop_span(fh.frames, sr, max_seconds, crop)
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


def _crop_span(frames: int, sr: int, max_seconds: float | None, crop: str) -> tuple[int, int]:
    """(first frame, frame count) of a file of ``frames`` frames once cropped."""
    if max_seconds is None or frames <= max_seconds * sr:
        return 0, frames
    keep = int(round(max_seconds * sr))
    return ((frames - keep) // 2 if crop in ("center", "centre") else 0), keep


def _open(path: str | os.PathLike[str]) -> sf.SoundFile:
    check_container(path)
    try:
        return sf.SoundFile(str(path))
    except (RuntimeError, sf.LibsndfileError, OSError) as e:
        raise AudioError(f"{path}: cannot decode audio ({e})") from e


def _blocks(
    path: str | os.PathLike[str],
    fh: sf.SoundFile,
    sample_rate: int,
    span: tuple[int, int],
) -> Iterator[tuple[np.ndarray, bool]]:
    """``span`` (first frame, count) of an open file as (float32 mono block at ``sample_rate``,
    whether it is the last), decoded and resampled block by block."""
    sr = fh.samplerate
    stream = (
        soxr.ResampleStream(sr, sample_rate, 1, dtype="float32", quality="HQ")
        if sr != sample_rate
        else None
    )
    first, left = span
    fh.seek(first)
    block = max(int(_BLOCK_SECONDS * sr), 1)
    done = False
    while not done:
        try:
            x = fh.read(min(block, left), dtype="float32", always_2d=True)
        except (RuntimeError, sf.LibsndfileError) as e:
            raise AudioError(f"{path}: cannot decode audio ({e})") from e
        left -= x.shape[0]
        done = x.shape[0] < block or left <= 0
        check_samples(path, x)
        y = _to_mono(x)
        yield (stream.resample_chunk(y, last=done) if stream is not None else y), done


def _spans(
    blocks: Iterator[tuple[np.ndarray, bool]], size: int, step: int
) -> Iterator[tuple[int, np.ndarray, int | None]]:
    """``(start, samples[start:start+size], remaining)`` every ``step`` over a stream of blocks,
    up to the last start before the end; ``remaining`` (samples from ``start`` to the end) is
    known only once the last block is in, None before."""
    buf = np.zeros(0, dtype=np.float32)
    offset = nxt = 0  # sample index of buf[0]; start of the next span
    for y, done in blocks:
        buf = np.concatenate([buf, y]) if len(buf) else y
        end = offset + len(buf)
        while (nxt < end) if done else (nxt + size <= end):
            yield nxt, buf[nxt - offset : nxt - offset + size].copy(), end - nxt if done else None
            nxt += step
        drop = min(nxt - offset, len(buf))
        buf, offset = buf[drop:], offset + drop


def iter_windows(
    path: str | os.PathLike[str], sample_rate: int, window: float, hop: float
) -> Iterator[tuple[float, np.ndarray]]:
    """Stream ``(start_seconds, samples)`` windows of a file of any length; the last window is
    the first that reaches the end (it may be shorter).

    The file is decoded and resampled block by block, so memory is bounded by the window and
    block sizes, never by the file's length.
    """
    win, step = int(round(window * sample_rate)), int(round(hop * sample_rate))
    if win <= 0 or step <= 0:
        raise AudioError(f"{path}: --window and --hop must be positive")
    with _open(path) as fh:
        if fh.frames == 0:
            raise AudioError(f"{path}: the file holds no audio samples")
        for start, seg, remaining in _spans(
            _blocks(path, fh, sample_rate, (0, fh.frames)), win, step
        ):
            yield start / sample_rate, seg
            if remaining is not None and remaining <= win:
                return


def iter_chunks(
    path: str | os.PathLike[str],
    sample_rate: int,
    step: int,
    overlap: int = 0,
    min_last: int = 1,
    *,
    max_seconds: float | None = None,
    crop: str = "start",
) -> Iterator[np.ndarray]:
    """Stream a file (cropped as :func:`load_audio` crops it) as chunks of ``step + overlap``
    samples every ``step`` samples; a chunk after the first only when at least ``min_last``
    samples remain from its start. Memory follows the chunk, never the file's length."""
    with _open(path) as fh:
        span = _crop_span(fh.frames, fh.samplerate, max_seconds, crop)
        if span[1] == 0:
            raise AudioError(f"{path}: the file holds no audio samples")
        blocks = _blocks(path, fh, sample_rate, span)
        for start, seg, remaining in _spans(blocks, step + overlap, step):
            if start == 0 or remaining is None or remaining >= min_last:
                yield seg
