"""Activations outside the theory, neuron clusters."""

import numpy as np
import pytest

from simbias import theory
from simbias.activations import CubicQuadratic, Softplus, Tanh, check_beta, make_activation
from simbias.analysis import cluster_count, neuron_clusters, numerical_rank

from conftest import unit_rows


@pytest.mark.parametrize("act", [CubicQuadratic(0.1), CubicQuadratic(0.5), Tanh(), Softplus()])
def test_out_of_theory_derivatives(act):
    z = np.linspace(-3, 3, 61)
    h = 1e-6
    for f, df in [(act.phi, act.d1), (act.d1, act.d2), (act.d2, act.d3)]:
        np.testing.assert_allclose(df(z), (f(z + h) - f(z - h)) / (2 * h), rtol=1e-6, atol=1e-7)


def test_constants_of_out_of_theory_activations():
    z = np.linspace(-20, 20, 400001)
    for act in [CubicQuadratic(0.1), CubicQuadratic(0.5), Tanh(), Softplus()]:
        assert act.rho1 <= act.d1(z).min() + 1e-9
        assert act.rho2 == pytest.approx(act.d3(z).min(), abs=1e-6)
    cq = CubicQuadratic(0.5)
    assert cq.theorem2_failures() == [] and check_beta(cq, cq.beta) and not check_beta(cq, 1.01 * cq.beta)
    assert CubicQuadratic(0.1).theorem2_failures()


@pytest.mark.parametrize(
    "spec", [{"name": "tanh"}, {"name": "softplus"}, {"name": "cubic_quadratic", "nu": 0.1}]
)
def test_theory_says_why_it_does_not_apply(spec, rng):
    act = make_activation(spec)
    X = unit_rows(rng, 3, 4)
    for app in (theory.theorem2_applicability(X, act), theory.theorem3_applicability(X, act)):
        assert not app.ok and "Assumption 1 fails" in app.reason


def test_cluster_counter_on_constructed_examples():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 4))
    Z = np.repeat(centres, [5, 3, 2], axis=0) + 1e-7 * rng.standard_normal((10, 4))
    np.testing.assert_array_equal(neuron_clusters(Z), [5, 3, 2])
    assert neuron_clusters(rng.standard_normal((6, 4))).tolist() == [1] * 6
    assert neuron_clusters(np.ones((4, 3))).tolist() == [4]
    Znan = Z.copy()
    Znan[0, 0] = np.nan
    np.testing.assert_array_equal(cluster_count(np.stack([Z, Znan])), [3, -1])
    # a chain of points each within tolerance of the next is one cluster (single linkage)
    chain = np.outer(np.arange(5) * 5e-4, [1.0, 0, 0]) + np.array([1.0, 0, 0])
    assert neuron_clusters(chain).tolist() == [5]


def test_effective_rank_threshold():
    assert numerical_rank(np.array([1.0, 0.5, 2e-3, 5e-4])) == 3
    assert numerical_rank(np.array([np.nan, 1.0])) == -1
