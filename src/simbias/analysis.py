"""Summaries of trajectories: numerical rank and principal components of neuron features."""

from __future__ import annotations

import numpy as np

# A singular value counts towards the rank when it exceeds this fraction of the largest.
RANK_REL_THRESHOLD = 1e-3

# F − F* below this fraction of F* is round-off (F sums m·n terms in float64): the figures
# draw it at this floor, and a sweep's table records the floor beside each gap.
GAP_FLOOR_REL = 1e-12


def numerical_rank(sv: np.ndarray, rel: float = RANK_REL_THRESHOLD) -> np.ndarray:
    """Number of singular values above ``rel`` × the largest (last axis; NaN rows give -1)."""
    sv = np.asarray(sv, dtype=float)
    top = sv[..., :1]
    with np.errstate(invalid="ignore"):
        r = np.sum(np.nan_to_num(sv, nan=0.0) > rel * top, axis=-1)
    return np.where(np.isnan(top[..., 0]), -1, r)


def lower_median(v) -> float:
    """Median that is one replica's value (the lower middle one): an integer stays an integer.
    NaN where there is no value (a failed sweep point: every replica diverged)."""
    v = np.asarray(v, dtype=float)
    v = v[np.isfinite(v)]
    return float(np.percentile(v, 50, method="lower")) if v.size else float("nan")


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


# Two neurons are in one cluster when their feature vectors z_j = X θ_j (rows of Z) are
# within this fraction of the largest ‖z_j‖ of each other (single linkage, i.e. chains count).
CLUSTER_REL_TOL = 1e-3


def cluster_labels(Z: np.ndarray, rel_tol: float = CLUSTER_REL_TOL) -> np.ndarray:
    """Cluster label 0, 1, ... of each row of one Z (m, n), largest cluster first; empty for NaN input."""
    from scipy.cluster.hierarchy import fcluster, linkage

    if not np.isfinite(Z).all():
        return np.array([], dtype=int)
    m = Z.shape[0]
    if m == 1:
        return np.array([0])
    scale = max(float(np.max(np.linalg.norm(Z, axis=1))), 1e-300)
    raw = fcluster(linkage(Z, method="single"), t=rel_tol * scale, criterion="distance")
    sizes = np.bincount(raw)
    order = sorted(np.unique(raw), key=lambda c: (-sizes[c], c))  # largest first, ties by label
    relabel = {c: i for i, c in enumerate(order)}
    return np.array([relabel[c] for c in raw])


def neuron_clusters(Z: np.ndarray, rel_tol: float = CLUSTER_REL_TOL) -> np.ndarray:
    """Cluster sizes (descending) of the rows of one Z (m, n); empty for NaN input."""
    labels = cluster_labels(Z, rel_tol)
    return np.bincount(labels) if labels.size else np.array([], dtype=int)


def cluster_count(Z: np.ndarray, rel_tol: float = CLUSTER_REL_TOL) -> np.ndarray:
    """Number of neuron clusters for a batch of feature matrices (..., m, n); -1 where not finite.

    Single linkage cut at the distance t = ``rel_tol`` × max_j ‖z_j‖ joins two rows exactly when
    a chain of rows, each within t of the next, links them: the clusters are the connected
    components of the graph with an edge where ‖z_i − z_j‖ ≤ t. Here that graph is built for
    the whole batch at once (block-diagonal, one block per matrix) and SciPy's
    ``connected_components`` counts them. The distances are summed in SciPy's ``pdist`` order,
    so the counts equal :func:`neuron_clusters` (SciPy's linkage and fcluster), ties at t included.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    Z = np.asarray(Z, dtype=float)
    m, n = Z.shape[-2:]
    flat = Z.reshape((-1, m, n))
    out = np.full(flat.shape[0], -1, dtype=np.int64)
    ok = np.flatnonzero(np.isfinite(flat).all(axis=(-2, -1)))
    iu, ju = np.triu_indices(m, 1)
    per_chunk = max(1, _CLUSTER_CHUNK // max(1, iu.size * n))  # bounds the (b, pairs, n) difference
    for start in range(0, ok.size, per_chunk):
        idx = ok[start : start + per_chunk]
        z = flat[idx]
        b = idx.size
        t = rel_tol * np.maximum(np.linalg.norm(z, axis=-1).max(axis=-1), 1e-300)
        diff = z[:, iu, :] - z[:, ju, :]
        d2 = diff[..., 0] * diff[..., 0]
        for k in range(1, n):  # left to right, as pdist's Euclidean distance
            d2 += diff[..., k] * diff[..., k]
        blk, pair = np.nonzero(np.sqrt(d2) <= t[:, None])
        graph = coo_matrix(
            (np.ones(blk.size, dtype=np.int8), (blk * m + iu[pair], blk * m + ju[pair])), shape=(b * m, b * m)
        )
        ncomp, labels = connected_components(graph, directed=False)
        block_of = np.empty(ncomp, dtype=np.int64)
        block_of[labels] = np.repeat(np.arange(b), m)  # components never cross blocks
        out[idx] = np.bincount(block_of, minlength=b)
    return out.reshape(Z.shape[:-2])


# numbers in one chunk's pairwise differences (~32 MB of float64)
_CLUSTER_CHUNK = 4_000_000
