"""The Ray executor's overhead on one machine: the same extraction with ``local`` and ``ray``.

Self-contained: a random-initialized encoder built from a config (no hub; see
``benchmarks/extract.py``), FSDD clips as they are (``--files``) or synthesised 4-12 s clips
(``--hours``). In one process, on the same files, into fresh workspaces, in the order
local, ray, local (so drift on a shared machine hits both sides): the wall time of each whole
``sslstack.extract`` call (the Ray run starts its local cluster and actors inside it; the time
of that start is reported apart), the overhead of Ray against the mean of the two local runs,
and the largest difference between the two executors' vectors.

    python benchmarks/scale.py                                       # CPU: all cores, one actor
    python benchmarks/scale.py --device cuda --hours 1 --arch wavlm-large      # one GPU
    python benchmarks/scale.py --hours 0.5 --cli --arms local,ray --repeat 5   # as a user runs it

``--cli`` times each run as its own ``sslstack extract`` process (Python's start and the imports
included, as a user's command pays them); ``--arms``/``--repeat`` interleave the runs and report
medians (one pair moves by 5-10 % here); an arm ``ray@NAME=VALUE`` runs Ray with that
environment variable (``--cli``). Each run's CPU seconds are also given by process.

On CUDA the Ray executor runs one actor on the GPU (``--gpus-per-worker 1``); both executors use
``--batch-seconds auto``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.extract import FSDD, build_model, fsdd_manifest, synth_manifest  # noqa: E402
from sslstack import extract  # noqa: E402
from sslstack.embeddings import find_store  # noqa: E402


class _CpuMeter:
    """CPU seconds (user + system) of this process and of every process started under it (Ray's
    cluster, workers and actors), read from /proc every 0.2 s while a run lasts.

    On a shared machine the wall times of two runs are skewed by how the kernel shares the cores
    among everyone's threads; the CPU seconds a run needs are not, and on idle cores that both
    runs keep busy the wall-time ratio follows them."""

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}
        self.names: dict[int, str] = {}  # pid -> its process title (Ray names its workers)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _CpuMeter:
        self.t0 = sum(os.times()[:2])
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.seconds = sum(os.times()[:2]) - self.t0 + sum(self.seen.values())
        by: dict[str, float] = {"driver": sum(os.times()[:2]) - self.t0}
        for pid, sec in self.seen.items():
            name = self.names.get(pid, "?")
            by[name] = by.get(name, 0.0) + sec
        self.by_process = {k: round(v, 2) for k, v in sorted(by.items(), key=lambda kv: -kv[1])}

    def _loop(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        while not self.stop.wait(0.2):
            stats = {}
            for d in Path("/proc").iterdir():
                try:  # (pid, ppid, utime + stime) of every process; a process may just have ended
                    f = (d / "stat").read_text().rpartition(")")[2].split()
                    stats[int(d.name)] = (int(f[1]), (int(f[11]) + int(f[12])) / tick)
                except (OSError, ValueError, IndexError):
                    continue
            mine, grew = {os.getpid()}, True
            while grew:  # the descendants of this process
                new = {p for p, (pp, _) in stats.items() if pp in mine and p not in mine}
                mine |= new
                grew = bool(new)
            for p in mine - {os.getpid()}:
                self.seen[p] = stats[p][1]
                # Ray retitles a worker while it runs a task or holds an actor ("ray::IDLE"
                # between): name it by the first such title, not its title at birth
                if self.names.get(p, "ray::IDLE").startswith(("ray::IDLE", "python default_")):
                    self.names[p] = _title(p)


def _title(pid: int) -> str:
    """A process's title, shortened to what tells Ray's processes apart (``ray::EncoderActor``,
    ``raylet``, ``gcs_server``, ...)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [w.decode(errors="replace") for w in raw if w]
    if not words:
        return "?"
    first = words[0].split()[0] if words[0].strip() else "?"
    if first.startswith("ray::"):
        return first.split(".")[0].split("(")[0]
    name = Path(first).name
    if name.startswith("python") and len(words) > 1:  # python -m ... or python path/to/x.py
        arg = words[2] if words[1] == "-m" and len(words) > 2 else words[1]
        return f"python {Path(arg).name}"
    return name


class _Phases(logging.Handler):
    """The Ray executor's phases (seconds since its start: cluster up, workspace probed, first
    part written, pipeline done, cluster stopped), from its debug log."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.phases: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "ray phases %s" and isinstance(record.args, dict):
            self.phases = dict(record.args)  # logging keeps a lone dict argument as the args


def _run(man: Path, model: Path, ws: Path, args: argparse.Namespace, **kw: Any) -> dict[str, Any]:
    if kw.pop("env", None):
        raise SystemExit("an arm's environment (ray@NAME=VALUE) needs --cli")
    phases = _Phases()
    logger = logging.getLogger("sslstack.extract.executors.ray")
    logger.addHandler(phases)
    logger.setLevel(logging.DEBUG)
    t0 = time.perf_counter()
    with _CpuMeter() as cpu:
        res = extract(
            man,
            str(model),
            workspace=ws,
            device=args.device,
            dtype=args.dtype,
            storage="float32",
            batch_seconds=args.batch_seconds,
            **kw,
        )
    wall = time.perf_counter() - t0
    logger.removeHandler(phases)
    out = _measured(wall, cpu, res.to_dict())
    return {**out, "phases_s": phases.phases} if phases.phases else out


def _measured(wall: float, cpu: _CpuMeter, res: dict[str, Any]) -> dict[str, Any]:
    """One run's figures from its result (``ExtractResult.to_dict()``, which ``--json``
    prints); a run that did not compute every item is no measurement."""
    if res["computed"] != res["items"] or res["failed"]:
        raise SystemExit(f"a run did not compute every item: {res}")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu.seconds, 2),
        "items": res["computed"],
        "audio_s": round(float(res["audio_seconds"]), 1),
        "cpu_by_process": cpu.by_process,
    }


def _run_cli(
    man: Path, model: Path, ws: Path, args: argparse.Namespace, **kw: Any
) -> dict[str, Any]:
    """One ``sslstack extract`` command in a fresh process, as a user runs it: its wall time
    includes Python's start and the imports (torch, transformers) that the in-process runs paid
    once before the first run."""
    import subprocess

    cmd = [sys.executable, "-m", "sslstack", "extract", "--model", str(model), "--data", str(man)]
    cmd += ["--workspace", str(ws), "--device", args.device, "--dtype", args.dtype]
    cmd += ["--storage", "float32", "--batch-seconds", args.batch_seconds, "--json"]
    opts = kw.get("executor_options")
    if opts is not None and set(opts) - {"workers", "cpus_per_worker"}:
        raise SystemExit(f"--cli passes workers and CPUs per worker only, not {sorted(opts)}")
    if opts is not None:
        cmd += ["--executor", "ray", "--ray-workers", str(opts["workers"])]
        cmd += ["--cpus-per-worker", f"{opts['cpus_per_worker']:g}"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    env.update(kw.get("env", {}))
    t0 = time.perf_counter()
    with _CpuMeter() as cpu:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return _measured(wall, cpu, json.loads(proc.stdout.strip().splitlines()[-1]))


def _max_diff(a: Path, b: Path, model: Path) -> float:
    sa, sb = find_store(str(model), a), find_store(str(model), b)
    keys = sa.keys()
    assert sb.keys() == keys
    worst = 0.0
    for x, y in zip(sa.read_items(keys), sb.read_items(keys), strict=True):
        for pool in x.clip:
            worst = max(worst, float(np.abs(x.clip[pool] - y.clip[pool]).max()))
    return worst


def _ray_start_seconds(cpus: float) -> float:
    """Seconds to start (and stop) a local Ray cluster, measured alone."""
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    up = time.perf_counter() - t0
    ray.shutdown()
    return up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="wav2vec2-base", help="an arch of benchmarks/extract.py")
    ap.add_argument("--files", type=int, default=1000, help="FSDD files as they are")
    ap.add_argument("--hours", type=float, default=None, help="synthesise this much 4-12 s audio")
    ap.add_argument("--data", type=Path, default=FSDD)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto", help="auto: fp32 on CPU, bf16 on CUDA")
    ap.add_argument("--batch-seconds", default="auto")
    ap.add_argument(
        "--ray-decode",
        choices=("auto", "actor", "tasks"),
        default="auto",
        help="where Ray decodes: in the encoder actor, in decoding tasks (auto: actor on CPU)",
    )
    ap.add_argument(
        "--arms",
        default="local,ray,local",
        help="the runs, in order (a quick look at one: --arms ray)",
    )
    ap.add_argument("--items-per-call", type=int, default=0, help="Ray: items per actor call")
    ap.add_argument(
        "--repeat", type=int, default=1, help="run --arms this many times; report medians"
    )
    ap.add_argument(
        "--cli",
        action="store_true",
        help="time each run as its own 'sslstack extract' process (what a user runs)",
    )
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    cuda = args.device.startswith("cuda")
    # one actor with every core (CPU) or the GPU: the same device work as the local executor
    opts: dict[str, Any] = {"workers": 1, "cpus_per_worker": 1.0 if cuda else float(cores)}
    if args.items_per_call:
        opts["items_per_call"] = args.items_per_call
    if args.ray_decode != "auto":
        opts["decode_in_actor"] = args.ray_decode == "actor"
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sslstack-scale-") as tmp:
        root = Path(tmp)
        model = build_model(args.arch, root / "models")
        if args.hours:
            man = synth_manifest(args.hours, root / "data", args.data)
        else:
            man = fsdd_manifest(args.files, root, args.data)
        runs: dict[str, dict[str, Any]] = {}
        for arm in args.arms.split(",") * args.repeat:
            # "ray@NAME=VALUE": a Ray run with that environment variable (--cli only; the
            # local cluster it starts, and so its actors, inherit it)
            base, _, setting = arm.partition("@")
            key = f"{arm}_{sum(k.rsplit('_', 1)[0] == arm for k in runs) + 1}"
            kw: dict[str, Any] = (
                {"executor": "ray", "executor_options": opts} if base == "ray" else {}
            )
            if setting:
                kw["env"] = dict([setting.split("=", 1)])
            runs[key] = (_run_cli if args.cli else _run)(man, model, root / key, args, **kw)
        if not {"local_1", "ray_1"} <= set(runs):
            print(json.dumps(runs))
            return
        diff = _max_diff(root / "local_1", root / "ray_1", model)
        start = _ray_start_seconds(opts["cpus_per_worker"] + 1)

    # medians over the repeats (with one repeat of local,ray,local: the mean of the two locals)
    def median(arm: str, what: str) -> float:
        return float(np.median([r[what] for k, r in runs.items() if k.rsplit("_", 1)[0] == arm]))

    local, local_cpu = median("local", "wall_s"), median("local", "cpu_s")
    ray_wall, ray_cpu = median("ray", "wall_s"), median("ray", "cpu_s")
    others = {a for a in (k.rsplit("_", 1)[0] for k in runs) if a not in ("local", "ray")}
    other_arms = {a: round(median(a, "wall_s") / local - 1, 4) for a in sorted(others)}
    runs["ray"] = runs.pop("ray_1")
    out = {
        "arch": args.arch,
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "cores": cores,
        "workload": {"files": runs["ray"]["items"], "audio_s": runs["ray"]["audio_s"]},
        "runs": runs,
        "ray_overhead": round(ray_wall / local - 1, 4),
        "ray_cluster_start_s": round(start, 2),
        "ray_overhead_after_start": round((ray_wall - start) / local - 1, 4),
        "ray_cpu_overhead": round(ray_cpu / local_cpu - 1, 4),
        "repeat": args.repeat,
        "other_arms_overhead": other_arms,
        "ray_decode": args.ray_decode,
        "method": "a process per run (--cli)" if args.cli else "one process",
        "max_abs_diff_vs_local": diff,
        "load_average": {"start": load_start, "end": os.getloadavg()},
    }
    line = json.dumps(out)
    walls = ", ".join(f"{k} {r['wall_s']:.1f} s" for k, r in runs.items())
    print(line)
    print(
        f"ray overhead: {out['ray_overhead']:+.1%} of local's wall time "
        f"(walls: {walls}) "
        f"({out['ray_overhead_after_start']:+.1%} after its {start:.1f} s cluster start; "
        f"CPU seconds {out['ray_cpu_overhead']:+.1%}); load average "
        + " -> ".join(f"{x[0]:.1f}" for x in out["load_average"].values())
    )
    if args.out:
        args.out.write_text(line + "\n")


if __name__ == "__main__":
    main()
