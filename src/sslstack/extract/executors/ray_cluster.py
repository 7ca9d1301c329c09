"""The Ray executor's cluster: join one or start a local one, check that every node sees the
workspace, and stop what this run started (:mod:`.ray` runs the pipeline on it)."""

from __future__ import annotations

import logging
import math
import os
import uuid
from pathlib import Path
from typing import Any

from ...errors import ConfigError, SslstackError
from ..runtimes import native_stderr_quiet

try:
    import ray
except ImportError:  # the extra is not installed: connect() says how to install it
    ray = None  # type: ignore[assignment]

INSTALL_HINT = "the Ray executor needs Ray: pip install 'sslstack[ray]'"
log = logging.getLogger(__name__)


class RayExecutorError(SslstackError):
    """The Ray cluster cannot run this extraction (unreachable, or the workspace is not shared)."""


def connect(
    address: str | None = None, num_cpus: float | None = None, need_cpus: float = 0.0
) -> str | None:
    """Join the cluster at ``address`` (or ``$RAY_ADDRESS``), or start a local one with
    ``num_cpus`` logical CPUs (None: the machine's, and at least ``need_cpus``).

    Returns:
        What this call did, which the caller undoes at the end: ``"joined"`` a cluster, or
        started a ``"local"`` one (this machine alone); None when Ray was already initialized
        in this process (a notebook or a test that manages it).

    Raises:
        ConfigError: Ray is not installed.
        RayExecutorError: the cluster cannot be reached.
    """
    if ray is None:
        raise ConfigError(f"--executor ray: {INSTALL_HINT}")
    if ray.is_initialized():
        return None
    address = address or os.environ.get("RAY_ADDRESS") or None
    # Ray's C++ core logs a warning about every actor pool (constructor arguments in the object
    # store) at error level; sslstack reports the run's errors itself
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    quiet: dict[str, Any] = dict(
        log_to_driver=False, logging_level=logging.ERROR, include_dashboard=False
    )
    if address:
        _check_reachable(address)
    try:
        with native_stderr_quiet():  # the core's "log level set" line: init errors still raise
            if address:
                _use_token_if_any()
                ray.init(address=address, **quiet)
            else:
                cpus = math.ceil(num_cpus or max(float(os.cpu_count() or 1), need_cpus))
                ray.init(address="local", num_cpus=cpus, **quiet)  # never a stray `ray start`
    except ConnectionError as e:
        raise RayExecutorError(
            f"--address {address}: cannot join a Ray cluster there ({e}); start one with "
            "'ray start --head', give this machine the cluster's token (~/.ray/auth_token or "
            "RAY_AUTH_TOKEN) when it uses one, or leave --address out for a local cluster"
        ) from None
    return "joined" if address else "local"


def shutdown(started: str) -> None:
    """Leave the cluster; a local one this run started also stops.

    Ray stops a local cluster's processes one after another, each given a second to exit on
    SIGTERM before a SIGKILL; its autoscaler monitor takes that whole second every time. It is
    killed first here, as Ray would a second later (the other processes exit at once).
    """
    if started == "local":
        try:
            node: Any = ray._private.worker._global_node
            for info in node.all_processes.get("monitor", []):
                info.process.kill()
                info.process.wait(5)
        except Exception:  # another Ray's internals: its own shutdown does it all
            log.debug("no autoscaler monitor to stop first", exc_info=True)
    ray.shutdown()


def _check_reachable(address: str) -> None:
    """Refuse an address nothing listens on (Ray would wait for it without end)."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", a name Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as e:
        raise RayExecutorError(
            f"--address {address}: nothing answers there ({e.strerror or e}); start a cluster "
            "with 'ray start --head' (it prints the address to join), or leave --address out "
            "for a local cluster"
        ) from None


def _use_token_if_any() -> None:
    """Send this machine's Ray token when it has one, as ``ray start`` does (Ray 2.5x starts
    clusters with token authentication; a client joining one does not look for the token)."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def check_shared_workspace(folder: Path) -> None:
    """Refuse unless every alive node of the cluster sees ``folder`` and can write into it.

    The driver leaves a token file; a task pinned to each node checks that it sees the token
    (same filesystem, same path) and writes its own, which the driver then must see.

    Raises:
        RayExecutorError: one line naming the node and what it could not do.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = f".ray-probe-{uuid.uuid4().hex}"
    (folder / token).write_text("sslstack")
    probe = ray.remote(num_cpus=0, max_retries=0)(_probe_folder)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    try:
        refs = [
            probe.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(str(folder), token)
            for n in nodes
        ]
        try:
            answers = ray.get(refs, timeout=120)
        except ray.exceptions.RayError as e:
            raise RayExecutorError(
                f"the Ray cluster cannot run sslstack's tasks ({_first_line(e)}); install the "
                "same sslstack on every node: pip install 'sslstack[ray]'"
            ) from None
        for node, (host, err) in zip(nodes, answers, strict=True):
            if not err and not (folder / f"{token}-{host}").exists():
                err = "its file did not appear here"
            if err:
                raise RayExecutorError(
                    f"workspace {folder.parent.parent.parent}: Ray node {host} "
                    f"({node.get('NodeManagerAddress', '?')}) {err}; the workspace must be on "
                    "a filesystem every worker sees at the same path (NFS or a cluster "
                    "filesystem), or run on one machine"
                )
    finally:
        for f in folder.glob(f"{token}*"):
            if f.is_file():
                f.unlink(missing_ok=True)


def _probe_folder(folder: str, token: str) -> tuple[str, str]:
    import socket

    host = socket.gethostname()
    if not os.path.exists(os.path.join(folder, token)):
        return host, f"does not see {folder} (not the same filesystem)"
    try:
        with open(os.path.join(folder, f"{token}-{host}"), "w") as fh:
            fh.write("sslstack")
    except OSError as e:
        return host, f"cannot write into {folder} ({e.strerror})"
    return host, ""


def _first_line(e: BaseException) -> str:
    cause = getattr(e, "cause", None) or e
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}"
