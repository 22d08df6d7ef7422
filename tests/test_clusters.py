"""The vectorised neuron-cluster count against SciPy's single linkage, one matrix at a time.

``analysis.cluster_count`` counts the connected components of the graph ‖z_i − z_j‖ ≤ t over a
whole batch; ``analysis.neuron_clusters`` is SciPy's ``linkage(method="single")`` cut by
``fcluster(criterion="distance")``, the definition the comparison used before. They must agree
exactly: on random and clustered matrices of the pipeline's sizes, on distances exactly at the
threshold (fcluster keeps a merge at height ≤ t), one unit in the last place either side of it,
and on non-finite (diverged) matrices, which count as -1.
"""

import numpy as np
import pytest

from simbias.analysis import cluster_count, neuron_clusters


def reference(Z: np.ndarray, rel_tol: float = 1e-3) -> np.ndarray:
    flat = Z.reshape((-1,) + Z.shape[-2:])
    return np.array([len(neuron_clusters(z, rel_tol)) or -1 for z in flat]).reshape(Z.shape[:-2])


def clustered(rng, m: int, n: int, spread: float) -> np.ndarray:
    """m rows around a few centres (chains and near-collapsed clusters, as along the flow)."""
    k = int(rng.integers(1, max(2, m // 2)))
    centres = rng.standard_normal((k, n))
    return centres[rng.integers(0, k, m)] + spread * rng.standard_normal((m, n))


@pytest.mark.parametrize("m,n", [(10, 3), (10, 6), (30, 15), (64, 32)])
def test_equals_scipy_linkage_on_random_and_clustered_batches(m, n):
    rng = np.random.default_rng(m * 100 + n)
    batch = np.stack(
        [rng.standard_normal((m, n)) for _ in range(10)]
        + [clustered(rng, m, n, s) for s in np.geomspace(1e-9, 1e-1, 40)]
    ).reshape(5, 10, m, n)
    got = cluster_count(batch)
    np.testing.assert_array_equal(got, reference(batch))
    assert got.shape == (5, 10) and got.min() >= 1 and len(np.unique(got)) > 3  # varied counts


def _with_threshold_at(rng, Z: np.ndarray, dist: float, nudge: int) -> tuple[np.ndarray, float]:
    """Z with a row of norm 2**p appended (the largest norm), and rel_tol putting the threshold
    exactly at ``dist`` (moved by ``nudge`` units in the last place): rel_tol·2**p is exact."""
    p = int(np.ceil(np.log2(np.linalg.norm(Z, axis=1).max() + 1))) + 1
    big = np.zeros(Z.shape[1])
    big[int(rng.integers(0, Z.shape[1]))] = 2.0**p
    t = dist
    for _ in range(abs(nudge)):
        t = np.nextafter(t, np.inf if nudge > 0 else 0.0)
    return np.vstack([Z, big]), t / 2.0**p


def test_ties_at_the_threshold_on_a_lattice():
    """Integer points: distances √k are exact, so the threshold sits exactly on them."""
    rng = np.random.default_rng(1)
    cases, expect_split = [], 0
    for _ in range(150):
        m, n = int(rng.integers(2, 12)), int(rng.integers(1, 5))
        Z = rng.integers(-2, 3, (m, n)).astype(float)
        d = np.sqrt(((Z[:, None] - Z[None]) ** 2).sum(-1))
        dist = float(rng.choice(np.unique(d[d > 0]))) if (d > 0).any() else 1.0
        for nudge in (0, -1, 1):
            Zt, rel = _with_threshold_at(rng, Z, dist, nudge)
            cases.append((Zt, rel))
    for Zt, rel in cases:
        got = cluster_count(Zt[None], rel)[0]
        assert got == reference(Zt[None], rel)[0]
        expect_split += got != cluster_count(Zt[None], np.nextafter(rel, np.inf))[0]
    assert expect_split > 20  # many cases hinge on a tie at t


def test_ties_at_the_threshold_with_rounded_distances():
    """Random rows (n ≥ 8): the threshold placed on one pair's distance exactly as SciPy's pdist
    rounds it, so a distance summed in another order (one ulp off) would cut differently."""
    from scipy.spatial.distance import pdist

    rng = np.random.default_rng(2)
    for _ in range(300):
        m, n = int(rng.integers(3, 9)), int(rng.integers(8, 20))
        Z = clustered(rng, m, n, 0.3)
        dist = float(rng.choice(pdist(Z)))
        Zt, rel = _with_threshold_at(rng, Z, dist, int(rng.integers(-1, 2)))
        assert cluster_count(Zt, rel) == reference(Zt, rel), (Zt, rel)


def test_diverged_and_degenerate_matrices():
    rng = np.random.default_rng(3)
    Z = clustered(rng, 10, 3, 1e-7)
    bad = [Z.copy() for _ in range(3)]
    bad[0][2, 1], bad[1][0, 0], bad[2][9, 2] = np.nan, np.inf, -np.inf
    batch = np.stack([Z, *bad, np.zeros((10, 3)), np.ones((10, 3))])
    np.testing.assert_array_equal(cluster_count(batch), [reference(Z[None])[0], -1, -1, -1, 1, 1])
    np.testing.assert_array_equal(cluster_count(np.full((2, 4, 10, 3), np.nan)), -np.ones((2, 4)))
    assert cluster_count(rng.standard_normal((1, 3))) == 1  # one neuron: one cluster
    assert cluster_count(np.empty((0, 10, 3))).shape == (0,)


def test_chunks_give_the_same_counts(monkeypatch):
    from simbias import analysis

    rng = np.random.default_rng(4)
    batch = np.stack([clustered(rng, 10, 3, s) for s in np.geomspace(1e-8, 1e-2, 50)])
    whole = cluster_count(batch)
    monkeypatch.setattr(analysis, "_CLUSTER_CHUNK", 1)  # one matrix per chunk
    np.testing.assert_array_equal(cluster_count(batch), whole)
    monkeypatch.setattr(analysis, "_CLUSTER_CHUNK", 7 * 45 * 3)  # 7 matrices per chunk
    np.testing.assert_array_equal(cluster_count(batch), whole)
