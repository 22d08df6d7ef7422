"""Summaries of trajectories: numerical rank and principal components of neuron features."""

from __future__ import annotations

import numpy as np

# A singular value counts towards the rank when it exceeds this fraction of the largest.
RANK_REL_THRESHOLD = 1e-3


def numerical_rank(sv: np.ndarray, rel: float = RANK_REL_THRESHOLD) -> np.ndarray:
    """Number of singular values above ``rel`` × the largest (last axis; NaN rows give -1)."""
    sv = np.asarray(sv, dtype=float)
    top = sv[..., :1]
    with np.errstate(invalid="ignore"):
        r = np.sum(np.nan_to_num(sv, nan=0.0) > rel * top, axis=-1)
    return np.where(np.isnan(top[..., 0]), -1, r)


def pca_basis(points: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top-k principal directions (k, dim) of a cloud of row vectors."""
    mean = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - mean, full_matrices=False)
    return mean, vt[:k]


def singular_values_nan(A: np.ndarray) -> np.ndarray:
    """Singular values of a batch of matrices (..., p, q); NaN rows for matrices with NaN."""
    ok = np.isfinite(A).all(axis=(-2, -1))
    out = np.full(A.shape[:-2] + (min(A.shape[-2:]),), np.nan)
    out[ok] = np.linalg.svd(A[ok], compute_uv=False)
    return out
