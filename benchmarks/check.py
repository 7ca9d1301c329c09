"""``check`` at scale: near-duplicate search and adversarial validation on synthetic vectors.

``--n`` training and ``--n`` test vectors of ``--dim`` dimensions (float32), shaped like
embeddings (a 64-dimensional structure plus noise), with ``--planted`` test rows that are
training rows plus a little noise (near duplicates to find) and, with ``--shift``, every test
vector moved along one direction (a shift to detect). Times :func:`sslstack.check.nearest`
(exact top-1 cosine, blocked) and :func:`sslstack.check.adversarial` (cross-validated ridge,
from Gram matrices), with peak RSS, the planted rows' recall and the AUC. ``--baseline N``
also runs scikit-learn's brute-force ``NearestNeighbors`` (cosine, on the same whitened
vectors) and a cross-validated ``LogisticRegression`` on ``N`` x ``N`` of the same data, and
sslstack's functions on that subset, in the same process, for ratios.

    python benchmarks/check.py --n 100000 --dim 768 --baseline 20000
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np

from sslstack.check import adversarial, nearest


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make(n: int, dim: int, planted: int, shift: float, seed: int = 0) -> tuple:
    """Training and test vectors, and the training row of each planted test row."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((64, dim)).astype(np.float32) / 8
    out = []
    for _ in range(2):
        x = np.empty((n, dim), dtype=np.float32)
        for a in range(0, n, 8192):
            m = min(8192, n - a)
            x[a : a + m] = rng.standard_normal((m, 64)).astype(np.float32) @ basis
            x[a : a + m] += 0.5 * rng.standard_normal((m, dim)).astype(np.float32)
        out.append(x)
    train, test = out
    src = rng.choice(n, planted, replace=False)
    rows = rng.choice(n, planted, replace=False)
    test[rows] = train[src] + 0.05 * rng.standard_normal((planted, dim)).astype(np.float32)
    if shift:
        direction = rng.standard_normal(dim).astype(np.float32)
        test += shift * direction / np.linalg.norm(direction)
    return train, test, rows, src


def _timed(fn, *args, **kw):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def _traced(fn, *args, **kw):  # type: ignore[no-untyped-def]
    """``fn``'s result, wall seconds, CPU seconds (all threads: what an idle machine would
    take, times its cores) and the peak MiB it allocated beyond its inputs (numpy's
    allocations are traced by tracemalloc)."""
    tracemalloc.start()
    cpu = time.process_time()
    try:
        out, s = _timed(fn, *args, **kw)
        return out, s, time.process_time() - cpu, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def _baseline(train: np.ndarray, test: np.ndarray, rows: np.ndarray, src: np.ndarray) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict
    from sklearn.neighbors import NearestNeighbors

    from sslstack.check.near import _unit, whitener

    n = len(train)
    ours, t_ours = _timed(nearest, train, test)

    def sklearn_nearest() -> np.ndarray:  # the same whitening, then scikit-learn's search
        mean, W = whitener(train, test)
        a, b = _unit(train, mean, W), _unit(test, mean, W)
        nn = NearestNeighbors(n_neighbors=1, algorithm="brute", metric="cosine")
        return nn.fit(a).kneighbors(b)[1]

    idx, t_sk = _timed(sklearn_nearest)
    same = float(np.mean(idx[:, 0] == ours.index))
    print(
        f"baseline {n} x {n}: nearest {t_ours:.1f} s, sklearn brute cosine {t_sk:.1f} s "
        f"(ratio {t_sk / t_ours:.2f}); same neighbour for {same:.4f} of rows"
    )
    shift, t_av = _timed(adversarial, train, test)
    x = np.vstack([train, test])
    y = np.r_[np.zeros(n), np.ones(n)]
    lr = LogisticRegression(max_iter=300)
    p, t_lr = _timed(cross_val_predict, lr, x, y, cv=5, method="decision_function")
    print(
        f"baseline {n} x {n}: adversarial {t_av:.1f} s (AUC {shift.auc:.4f}), sklearn "
        f"LogisticRegression 5-fold {t_lr:.1f} s (AUC {roc_auc_score(y, p):.4f}) "
        f"(ratio {t_lr / t_av:.2f})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--planted", type=int, default=1000)
    ap.add_argument("--shift", type=float, default=0.0)
    ap.add_argument("--baseline", type=int, default=0, help="also compare on N x N")
    args = ap.parse_args()
    train, test, rows, src = make(args.n, args.dim, args.planted, args.shift)
    print(f"data: {args.n} x {args.n} x {args.dim} float32, RSS {_rss_mib():.0f} MiB")
    if args.baseline:
        k = args.baseline
        keep = rows[rows < k]
        _baseline(train[:k], test[:k], keep, src[rows < k])
        del keep
    nn, t_nn, cpu_nn, mem_nn = _traced(nearest, train, test)
    found = float(np.mean(nn.index[rows] == src))
    cos = float(np.min(nn.cosine[rows]))
    other = np.ones(args.n, dtype=bool)
    other[rows] = False
    print(
        f"nearest: {t_nn:.1f} s ({cpu_nn:.1f} CPU s); planted found {found:.4f}, "
        f"lowest planted cosine {cos:.3f}, "
        f"highest other {float(nn.cosine[other].max()):.3f}; allocated at peak {mem_nn:.0f} "
        f"MiB beyond the inputs ({train.nbytes / 2**20:.0f} MiB each); "
        f"peak RSS {_rss_mib():.0f} MiB"
    )
    sh, t_av, cpu_av, mem_av = _traced(adversarial, train, test)
    print(
        f"adversarial: {t_av:.1f} s ({cpu_av:.1f} CPU s); AUC {sh.auc:.4f} ± {sh.se:.4f} "
        f"({sh.verdict}); "
        f"allocated at peak {mem_av:.0f} MiB beyond the inputs"
    )


if __name__ == "__main__":
    main()
