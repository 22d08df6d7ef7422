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


def problem_on_manifold():
    """A small n ≤ d problem and a point θ0 on M (m, d, n = 4, 3, 2), for the clock tests."""
    from simbias import flow

    rng = np.random.default_rng(7)
    act = OddPower(1, 0.1)
    m, d, n = 4, 3, 2
    X = rng.uniform(0, 1, (n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = rng.uniform(0, 1, n)
    w = np.ones(m)
    theta0 = flow.retract(act, 0.5 * rng.standard_normal((m, d)), X, y, w)[0]
    return act, X, y, w, theta0
