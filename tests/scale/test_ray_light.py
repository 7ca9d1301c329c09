"""The Ray executor's edges: optional and never imported by the local path, flags that need it,
and the one-line refusal of a workspace the workers cannot see or write."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sslstack.cli import app
from sslstack.errors import SslstackError
from tests.audio_fixtures import write_dataset

REPO = Path(__file__).resolve().parents[2]


def test_local_extract_and_cli_never_import_ray(tmp_path: Path) -> None:
    man = write_dataset(tmp_path / "d", 2)
    code = (
        "import sys, sslstack.cli\n"
        "from sslstack import extract\n"
        "from sslstack.extract.executors import EXECUTORS\n"
        f"extract({str(man)!r}, 'logmel', workspace={str(tmp_path / 'ws')!r})\n"
        "assert 'ray' in EXECUTORS.names()\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n"
    )
    env = {"PYTHONPATH": f"{REPO / 'src'}:{REPO}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_ray_drivers_process_never_imports_torch(tmp_path: Path) -> None:
    """With ``--executor ray`` the driver only plans, watches and commits: the encoders run in
    the actors, so torch (seconds of a core to import) stays out of the driver's process."""
    man = write_dataset(tmp_path / "d", 2)
    code = (
        "import sys\n"
        "from sslstack import extract\n"
        f"res = extract({str(man)!r}, 'logmel', workspace={str(tmp_path / 'ws')!r}, "
        "executor='ray', executor_options={'num_cpus': 2, 'cpus_per_worker': 0.5})\n"
        "assert res.computed == 2, res\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    env = {"PYTHONPATH": f"{REPO / 'src'}:{REPO}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_ray_flags_need_the_ray_executor(tmp_path: Path) -> None:
    man = write_dataset(tmp_path / "d", 2)
    for flag in (["--address", "auto"], ["--ray-workers", "2"], ["--gpus-per-worker", "1"]):
        res = CliRunner().invoke(
            app, ["extract", "-m", "logmel", "-d", str(man), "-w", str(tmp_path / "ws"), *flag]
        )
        assert res.exit_code != 0
        assert f"error: {flag[0]} needs --executor ray" in res.output
        assert "Traceback" not in res.output


def test_probe_names_what_a_node_cannot_do(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from sslstack.extract.executors.ray_cluster import _probe_folder

    host, err = _probe_folder(str(tmp_path), ".ray-probe-x")
    assert host == socket.gethostname() and "does not see" in err
    (tmp_path / ".ray-probe-x").write_text("sslstack")
    (tmp_path / f".ray-probe-x-{host}").mkdir()  # where the node's own file should go
    assert "cannot write into" in _probe_folder(str(tmp_path), ".ray-probe-x")[1]


def test_a_workspace_a_worker_cannot_write_is_refused_in_one_line(
    tmp_path: Path, ray_cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sslstack.extract.executors import ray_cluster

    token = uuid.UUID(int=7)
    monkeypatch.setattr(ray_cluster.uuid, "uuid4", lambda: token)
    parts = tmp_path / "ws" / "stores" / "s" / "parts"
    parts.mkdir(parents=True)
    (parts / f".ray-probe-{token.hex}-{socket.gethostname()}").mkdir()  # blocks the worker
    with pytest.raises(SslstackError) as e:
        ray_cluster.check_shared_workspace(parts)
    msg = str(e.value)
    assert "\n" not in msg and "cannot write into" in msg
    assert "a filesystem every worker sees at the same path" in msg
    assert not [p for p in parts.iterdir() if p.is_file()]  # the probe cleans up after itself


def test_an_address_nothing_answers_is_one_line_not_a_wait() -> None:
    pytest.importorskip("ray")
    from sslstack.extract.executors.ray_cluster import RayExecutorError, _check_reachable

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RayExecutorError, match=rf"^--address 127.0.0.1:{port}: nothing answers"):
        _check_reachable(f"127.0.0.1:{port}")


def test_more_gpus_than_the_cluster_has_is_one_line(tmp_path: Path, ray_cluster: str) -> None:
    """Actors the cluster cannot hold would wait for resources without end: refused instead."""
    from sslstack import extract

    man = write_dataset(tmp_path / "d", 2)
    with pytest.raises(SslstackError, match=r"needs 1 GPU\(s\); the Ray cluster has 0: ") as e:
        extract(man, "logmel", workspace=tmp_path / "ws", executor="ray",
                executor_options={"gpus_per_worker": 1, "cpus_per_worker": 0.5})  # fmt: skip
    assert "\n" not in str(e.value)


def test_without_ray_installed_the_ray_executor_is_one_line(tmp_path: Path) -> None:
    man = write_dataset(tmp_path / "d", 2)
    code = (
        "import sys\n"
        "sys.modules['ray'] = None  # as if the extra were not installed\n"
        "from sslstack.cli import main\n"
        f"sys.argv = ['sslstack', 'extract', '-m', 'logmel', '-d', {str(man)!r},"
        f" '-w', {str(tmp_path / 'ws')!r}, '--executor', 'ray']\n"
        "main()\n"
    )
    env = {"PYTHONPATH": f"{REPO / 'src'}:{REPO}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    err = out.stderr.strip().splitlines()
    assert (
        err[-1] == "error: --executor ray: the Ray executor needs Ray: pip install 'sslstack[ray]'"
    )
    assert "Traceback" not in out.stderr


def test_actors_decode_on_cpus_and_decoding_tasks_feed_gpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a GPU the encoder actor reads its items (decoding tasks would only compete with it
    for the same cores); with one, decoding stays in CPU tasks; the option overrides both."""
    pytest.importorskip("ray")
    from sslstack.extract.executors import ray as ray_executor
    from sslstack.extract.executors.ray import RayOptions, _resources

    have = {"CPU": 16.0, "GPU": 2.0}
    monkeypatch.setattr(ray_executor.ray, "cluster_resources", lambda: have)
    assert _resources(RayOptions(), "cpu") == (1, 0.0, 1.0, True)
    assert _resources(RayOptions(), "cuda") == (2, 1.0, 1.0, False)
    assert _resources(RayOptions(decode_in_actor=True), "cuda")[3] is True
    assert _resources(RayOptions(decode_in_actor=False), "cpu")[3] is False
    # an actor that decodes needs no CPU beside its own; decoding tasks need theirs
    have = {"CPU": 2.0}
    assert _resources(RayOptions(cpus_per_worker=2.0), "cpu")[3] is True
    with pytest.raises(SslstackError, match=r"needs 2.5 CPU\(s\); the Ray cluster has 2: "):
        _resources(RayOptions(cpus_per_worker=2.0, decode_in_actor=False), "cpu")
