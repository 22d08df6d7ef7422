import numpy as np
import pytest

from simbias.activations import OddPower


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def unit_rows(rng, n, d):
    X = rng.uniform(0, 1, size=(n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.fixture
def small_problem(rng):
    """A random n ≤ d problem: (act, X, y, w, theta) with 3 replicas."""
    m, d, n = 5, 4, 3
    X = unit_rows(rng, n, d)
    y = rng.standard_normal(n)
    w = np.ones(m)
    theta = 0.4 * rng.standard_normal((3, m, d))
    return OddPower(k=1, nu=0.1), X, y, w, theta
