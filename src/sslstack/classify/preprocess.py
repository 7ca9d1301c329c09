"""Preprocessing fitted inside each fold: optional standardization, then optional PCA (or,
``pca=LDA``, a shrunk linear discriminant projection onto at most classes - 1 axes).

Fitted state is plain arrays, saved as ``.npz`` (never pickle) and applied with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

LDA = -1  # the ``pca`` value of the supervised projection (single-label, three classes or more)
# the within-class covariance is shrunk this far toward a scaled identity: on 60 classes x 1024-d
# (BirdNET, 2400 training rows) XGBoost on the projection scored 0.900 / 0.953 / 0.963 on a fold
# at 0.01 / 0.1 / 0.3, PCA 64 0.898 (docs/benchmarks.md)
LDA_SHRINK = 0.3


@dataclass
class Preprocessor:
    """``(x - mean) / scale`` then ``(x - pca_mean) @ components.T``; both steps optional."""

    standardize: bool = False
    pca: int = 0
    mean_: np.ndarray | None = None
    scale_: np.ndarray | None = None
    pca_mean_: np.ndarray | None = None
    components_: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def fit(self, x: np.ndarray, seed: int = 0, y: np.ndarray | None = None) -> Preprocessor:
        """Fit on ``x`` (``y``: class indices, which ``pca=LDA`` needs; without them, or with
        fewer than three classes, the projection is left out)."""
        if self.standardize:
            self.mean_ = x.mean(axis=0)
            std = x.std(axis=0)
            self.scale_ = np.where(std > 1e-12, std, 1.0).astype(np.float32)
            x = (x - self.mean_) / self.scale_
        if self.pca == LDA:
            if y is not None and y.ndim == 1 and len(np.unique(y)) > 2:
                self.pca_mean_, self.components_ = lda_projection(x, y)
            return self
        width = min(self.pca, x.shape[0] - 1, x.shape[1])
        if self.pca and width < x.shape[1]:
            from sklearn.decomposition import PCA

            pca = PCA(n_components=width, svd_solver="randomized", random_state=seed).fit(x)
            self.pca_mean_ = pca.mean_.astype(np.float32)
            self.components_ = pca.components_.astype(np.float32)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.mean_ is not None and self.scale_ is not None:
            x = (x - self.mean_) / self.scale_
        if self.components_ is not None and self.pca_mean_ is not None:
            x = (x - self.pca_mean_) @ self.components_.T
        return np.ascontiguousarray(x, dtype=np.float32)

    def fit_transform(
        self, x: np.ndarray, seed: int = 0, y: np.ndarray | None = None
    ) -> np.ndarray:
        return self.fit(x, seed, y).transform(x)

    def save(self, path: Path) -> None:
        arrays = {
            k: v
            for k, v in (
                ("mean", self.mean_),
                ("scale", self.scale_),
                ("pca_mean", self.pca_mean_),
                ("components", self.components_),
            )
            if v is not None
        }
        arrays.update({f"extra_{k}": v for k, v in self.extra.items()})
        arrays.update(standardize=np.array(self.standardize), pca=np.array(self.pca))
        np.savez(path, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: Path) -> Preprocessor:
        with np.load(path, allow_pickle=False) as z:
            get = {k: z[k] for k in z.files}
        return cls(
            standardize=bool(get["standardize"]),
            pca=int(get["pca"]),
            mean_=get.get("mean"),
            scale_=get.get("scale"),
            pca_mean_=get.get("pca_mean"),
            components_=get.get("components"),
            extra={k[6:]: v for k, v in get.items() if k.startswith("extra_")},
        )


def lda_projection(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean and the ``(k, d)`` axes of a shrunk LDA of ``x`` by the classes ``y``
    (``k`` = classes - 1): the within-class covariance, shrunk by :data:`LDA_SHRINK`, is
    whitened, and the class means' spread in that space gives the axes, by explained spread."""
    x = np.asarray(x, dtype=np.float64)
    classes, inv, counts = np.unique(y, return_inverse=True, return_counts=True)
    mu = x.mean(axis=0)
    means = np.zeros((len(classes), x.shape[1]))
    np.add.at(means, inv, x)
    means /= counts[:, None]
    within = x - means[inv]
    sw = within.T @ within / len(x)
    sw = (1.0 - LDA_SHRINK) * sw + LDA_SHRINK * np.trace(sw) / len(sw) * np.eye(len(sw))
    lam, vec = np.linalg.eigh(sw)
    white = vec / np.sqrt(np.maximum(lam, 1e-12))
    between = ((means - mu) * np.sqrt(counts / len(x))[:, None]) @ white
    _, _, vt = np.linalg.svd(between, full_matrices=False)
    axes = (white @ vt[: len(classes) - 1].T).T
    return mu.astype(np.float32), axes.astype(np.float32)
