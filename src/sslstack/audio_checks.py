"""Honest decoding: what a decoder reads without a word but is not the recording.

libsndfile reads a WAV whose data was cut off (or whose header claims more frames than the
file holds) as a shorter clip, and mpg123 skips garbage in the middle of an MP3; a float WAV
may hold values no microphone gives (1e30) that turn into NaN inside an encoder. These checks
turn each into an :class:`~sslstack.errors.AudioError` naming the file (an ``--on-error skip``
entry in ``extract``), so no silent vector, and no NaN, is ever stored.

- :func:`check_container`: the container's own bookkeeping (RIFF chunk sizes, MPEG frame
  chain) against the bytes the file holds; read from the header and frame headers only.
- :func:`check_samples`: decoded samples are finite and below :data:`MAX_ABS`.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from .errors import AudioError

MAX_ABS = 1e3  # 60 dB above full scale: no recording holds this; a mis-scaled float file does
_TAIL_SLACK = 2048  # bytes after the last whole MPEG frame that may be padding or a tag

_BITRATES = {  # kbit/s by (MPEG-1?, layer) for indexes 1..14
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def check_container(path: str | os.PathLike[str]) -> None:
    """Refuse a WAV whose data chunk claims more bytes than the file holds, and an MPEG audio
    file whose chain of frames is broken before its end.

    Raises:
        AudioError: naming the file, what is wrong and what to do.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(12)
            if head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
                _check_wav(p, fh, head[:4] == b"RIFX")
            elif p.suffix.lower() in (".mp3", ".mp2", ".mpga"):
                fh.seek(0)
                _check_mpeg(p, fh.read())
    except OSError as e:
        raise AudioError(f"{path}: cannot read the file ({e.strerror})") from e


def _check_wav(path: Path, fh: object, big: bool) -> None:
    size = path.stat().st_size
    fmt = ">4sI" if big else "<4sI"
    pos, block = 12, 1
    while pos + 8 <= size:
        fh.seek(pos)  # type: ignore[attr-defined]
        cid, n = struct.unpack(fmt, fh.read(8))  # type: ignore[attr-defined]
        if cid == b"fmt " and n >= 14:
            block = max(1, struct.unpack(">H" if big else "<H", fh.read(14)[12:14])[0])  # type: ignore[attr-defined]
        if cid == b"data":
            have = size - pos - 8
            if n not in (0, 0xFFFFFFFF) and n - have >= block:  # 0 / ~0: a streamed WAV
                raise AudioError(
                    f"{path}: truncated or damaged WAV: its header says {n} bytes of audio "
                    f"data, the file holds {max(have, 0)} ({100 * max(have, 0) / n:.0f} %); "
                    "copy or export it again (or leave it out: --on-error skip)"
                )
            return
        pos += 8 + n + (n & 1)


def _frame_length(h: bytes) -> int | None:
    """Bytes of the MPEG audio frame whose 4-byte header is ``h`` (None: not a header)."""
    if h[0] != 0xFF or (h[1] & 0xE0) != 0xE0:
        return None
    version, layer = (h[1] >> 3) & 3, 4 - ((h[1] >> 1) & 3)
    rate_i, br_i, pad = (h[2] >> 2) & 3, h[2] >> 4, (h[2] >> 1) & 1
    if version == 1 or layer == 4 or rate_i == 3 or br_i in (0, 15):
        return None  # reserved values (free-format streams are not checked: see caller)
    rate = _RATES[version][rate_i]
    bps = _BITRATES[(version == 3, layer)][br_i - 1] * 1000
    if layer == 1:
        return (12 * bps // rate + pad) * 4
    per = 144 if (layer == 2 or version == 3) else 72
    return per * bps // rate + pad


def _check_mpeg(path: Path, data: bytes) -> None:
    pos, end = 0, len(data)
    if data[:3] == b"ID3" and len(data) >= 10:  # ID3v2 tag: synchsafe size
        n = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
        pos = 10 + n + (10 if data[5] & 0x10 else 0)
    if end >= 128 and data[end - 128 : end - 125] == b"TAG":  # ID3v1 tag
        end -= 128
    start = data.find(b"\xff", pos)
    while start != -1 and start + 4 <= end and _frame_length(data[start : start + 4]) is None:
        start = data.find(b"\xff", start + 1)
        if start - pos > 65536:
            return  # no frame near the start (free format, or not MPEG): decoding will say
    if start == -1:
        return
    pos, frames = start, 0
    while pos + 4 <= end:
        length = _frame_length(data[pos : pos + 4])
        if length is None:
            if end - pos > _TAIL_SLACK:
                raise AudioError(
                    f"{path}: damaged MPEG audio: the chain of frames breaks at byte {pos} "
                    f"(after {frames} frames, {end - pos} bytes before the end): the decoder "
                    "would skip what follows silently; copy or export it again (or leave it "
                    "out: --on-error skip)"
                )
            return
        pos += length
        frames += 1


def check_samples(path: str | os.PathLike[str], x: np.ndarray) -> None:
    """Refuse decoded samples that are not finite or far beyond full scale.

    Raises:
        AudioError: naming the file and the first bad value.
    """
    finite = np.isfinite(x)
    if not finite.all():
        raise AudioError(
            f"{path}: the audio holds NaN or infinite samples ({int((~finite).sum())} of "
            f"{x.size}); it is damaged or not audio: export it again (or --on-error skip)"
        )
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > MAX_ABS:
        raise AudioError(
            f"{path}: sample values reach {peak:.3g}, far beyond full scale (1.0): a float file "
            "written with a wrong scale, or not audio; rescale it to [-1, 1] (or --on-error skip)"
        )
