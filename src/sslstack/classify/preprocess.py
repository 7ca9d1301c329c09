"""Preprocessing fitted inside each fold: optional standardization, then optional PCA.

Fitted state is plain arrays, saved as ``.npz`` (never pickle) and applied with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


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

    def fit(self, x: np.ndarray, seed: int = 0) -> Preprocessor:
        if self.standardize:
            self.mean_ = x.mean(axis=0)
            std = x.std(axis=0)
            self.scale_ = np.where(std > 1e-12, std, 1.0).astype(np.float32)
            x = (x - self.mean_) / self.scale_
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

    def fit_transform(self, x: np.ndarray, seed: int = 0) -> np.ndarray:
        return self.fit(x, seed).transform(x)

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
