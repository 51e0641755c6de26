"""Feature statistics and the Frechet distance between two Gaussians (the FID formula).

FID = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^(1/2)).

The trace of the matrix square root is computed from the eigenvalues of the symmetric positive semi-definite
matrix S_1^(1/2) S_2 S_1^(1/2), which has the same spectrum as S_1 S_2. That avoids the complex-valued,
sometimes non-finite results of a general ``sqrtm`` on the non-symmetric product, and costs two symmetric
eigendecompositions.

Both functions run numpy's BLAS on one thread: multi-threaded BLAS sums in a thread-count dependent order, and the
result must not depend on how many processes or threads a run used.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from ..errors import InputError
from ..fileio import atomic_file


@dataclass(frozen=True)
class FeatureStats:
    """Mean ``mu`` [D] and covariance ``sigma`` [D, D] (float64) of ``num`` feature vectors."""

    mu: np.ndarray
    sigma: np.ndarray
    num: int

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])


@threadpool_limits.wrap(limits=1, user_api="blas")
def feature_stats(features: np.ndarray) -> FeatureStats:
    """features [N, D] (N >= 2) -> their mean and unbiased covariance, computed in float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise InputError(f"need at least 2 feature vectors [N, D] for statistics, got shape {tuple(x.shape)}")
    if not np.isfinite(x).all():
        raise InputError("features contain NaN or infinite values")
    return FeatureStats(mu=x.mean(axis=0), sigma=np.cov(x, rowvar=False), num=int(x.shape[0]))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative rounding-error eigenvalues -> 0)."""
    vals, vecs = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


@threadpool_limits.wrap(limits=1, user_api="blas")
def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """The Frechet distance between N(a.mu, a.sigma) and N(b.mu, b.sigma)."""
    if a.mu.shape != b.mu.shape or a.sigma.shape != b.sigma.shape:
        raise InputError(f"statistics of different feature sizes: {a.dim} vs {b.dim}")
    root_a = _psd_sqrt(a.sigma)
    middle = root_a @ b.sigma @ root_a
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(eig, 0, None)).sum())
    diff = a.mu - b.mu
    return float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2 * trace_sqrt)


def save_stats(stats: FeatureStats, path: str | os.PathLike[str], meta: dict[str, Any] | None = None) -> Path:
    """Write ``mu``/``sigma`` (the keys pytorch-fid's ``.npz`` files use) plus ``num`` and a JSON ``meta``,
    atomically (a temporary file renamed into place)."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez adds no suffix to it
        np.savez(f, mu=stats.mu, sigma=stats.sigma, num=np.int64(stats.num),
                 meta=np.array(json.dumps(meta or {}, sort_keys=True)))
    return path


def load_stats(path: str | os.PathLike[str]) -> tuple[FeatureStats, dict[str, Any]]:
    """Read statistics written by ``save_stats`` or by pytorch-fid (``mu``, ``sigma``). Raises InputError."""
    import json
    import zipfile

    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"{path}: cannot read statistics ({' '.join(str(e).split()[:12])})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise InputError(f"{path}: not a statistics file (an .npz with arrays 'mu' and 'sigma')")
    with data:
        if "mu" not in data.files or "sigma" not in data.files:
            raise InputError(f"{path}: not a statistics file (needs arrays 'mu' and 'sigma', has {data.files})")
        try:
            mu = np.asarray(data["mu"], dtype=np.float64)
            sigma = np.asarray(data["sigma"], dtype=np.float64)
            num = int(data["num"]) if "num" in data.files else 0
            meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
        except (OSError, ValueError, TypeError, zipfile.BadZipFile, EOFError) as e:
            raise InputError(f"{path}: cannot read statistics ({e})") from None
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise InputError(f"{path}: 'mu' {mu.shape} and 'sigma' {sigma.shape} are not a mean and its covariance")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise InputError(f"{path}: statistics contain NaN or infinite values")
    return FeatureStats(mu=mu, sigma=sigma, num=num), meta
