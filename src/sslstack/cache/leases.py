"""Leases of part writers: who is writing a store, and which writers are gone.

Every part writer holds a lease file ``<store>/writers/<token>.json`` (its host, pid and
command) from before its first temporary file until it closes, and renews its mtime every
:data:`RENEW_S` seconds from a daemon thread. A writer is *gone* when

- it ran on this host and its pid is no longer alive, or
- it ran on another host and its lease was not renewed for :data:`LEASE_S` seconds (a host
  cannot see another host's processes), or
- it has no lease at all (and its temporary file is older than :data:`GRACE_S`: a lease is
  written before any temporary file, so only a writer that removed its lease, or one whose
  lease a filesystem has not shown yet, has none).

Only a gone writer's temporary files are ever removed (by the committer, under the lock).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any

from ..workspace import pid_alive
from .parts import WRITERS, temp_owner

LEASE_S = 600.0
RENEW_S = 30.0
GRACE_S = 60.0


class Lease:
    """A part writer's lease on a store folder (``with Lease(path, command) as lease:``)."""

    def __init__(self, store_path: Path, command: str = "") -> None:
        self.token = secrets.token_hex(8)
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.path = store_path / WRITERS / f"{self.token}.json"
        self.command = command
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Lease:
        self.path.parent.mkdir(exist_ok=True)
        info = {"host": self.host, "pid": self.pid, "command": self.command, "since": time.time()}
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(info), encoding="utf-8")
        os.replace(tmp, self.path)
        self._thread = threading.Thread(target=self._renew, name="sslstack-lease", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_S):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.path.unlink(missing_ok=True)


def read_lease(store_path: Path, token: str) -> dict[str, Any] | None:
    """A lease's content with its age in seconds (``age``); None when there is none."""
    path = store_path / WRITERS / f"{token}.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        info["age"] = time.time() - path.stat().st_mtime
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def writer_gone(store_path: Path, token: str, file_age: float) -> bool:
    """Is the writer of ``token`` gone (see the module's rules)? ``file_age``: seconds since
    its temporary file was last written."""
    info = read_lease(store_path, token)
    if info is None:
        return file_age > GRACE_S
    if info.get("host") == socket.gethostname():
        return not pid_alive(int(info.get("pid", 0)))
    return float(info["age"]) > LEASE_S


def live_writers(store_path: Path) -> list[dict[str, Any]]:
    """The leases of writers not gone (``token`` added to each)."""
    folder = store_path / WRITERS
    out = []
    for p in sorted(folder.glob("*.json")) if folder.exists() else []:
        token = p.stem
        if not writer_gone(store_path, token, 0.0):
            info = read_lease(store_path, token)
            if info is not None:
                out.append({**info, "token": token})
    return out


def remove_gone_leases(store_path: Path) -> int:
    """Delete the lease files of gone writers; how many."""
    folder = store_path / WRITERS
    n = 0
    for p in list(folder.glob("*.json")) if folder.exists() else []:
        if writer_gone(store_path, p.stem, 0.0) and read_lease(store_path, p.stem) is not None:
            p.unlink(missing_ok=True)
            n += 1
    return n


def gone_temporaries(store_path: Path) -> list[Path]:
    """Temporary parts whose writers are gone (a temporary of an older sslstack counts as
    gone: its writer held the lock, which the caller holds or is about to take)."""
    folder = store_path / "parts"
    out = []
    now = time.time()
    for tmp in sorted(folder.glob(".*.tmp")) if folder.exists() else []:
        token = temp_owner(tmp.name)
        if token is None:
            continue
        try:
            age = now - tmp.stat().st_mtime
        except FileNotFoundError:
            continue
        if token == "" or writer_gone(store_path, token, age):
            out.append(tmp)
    return out
