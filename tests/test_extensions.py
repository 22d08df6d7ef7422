"""Activations outside the theory, neuron clusters."""

import numpy as np
import pytest
from conftest import unit_rows

from simbias import theory
from simbias.activations import CubicQuadratic, Softplus, Tanh, check_beta, make_activation
from simbias.analysis import cluster_count, neuron_clusters, numerical_rank


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


def test_gd_control_keeps_the_rank_it_had_on_reaching_M():
    """Plain GD (σ = 0) stops once on M: Z's singular values no longer change after that."""
    from simbias import ensemble, model, sgd
    from simbias.activations import OddPower

    rng = np.random.default_rng(5)
    act = OddPower(1, 0.1)
    X = unit_rows(rng, 3, 3)
    y = rng.uniform(0, 1, 3)
    w = np.ones(10)
    theta0 = 0.1 * rng.standard_normal((4, 10, 3))
    rec = ensemble.record_schedule(60000, 40, 0)
    res = sgd.label_noise_sgd(
        np,
        act,
        theta0,
        X,
        y,
        w,
        eta=0.05,
        sigma=0.0,
        steps=60000,
        record_steps=rec,
        seed=0,
        cpu_kernel="numpy",
    )
    for r in range(4):
        on_M = np.flatnonzero(res.loss[r] < 1e-20)
        assert on_M.size, "GD did not reach M"
        first = on_M[0]
        sv_M, sv_end = res.feature_sv[r, first], res.feature_sv[r, -1]
        np.testing.assert_allclose(sv_end, sv_M, rtol=1e-6, atol=1e-9)
        assert sv_end[1] / sv_end[0] > 1e-3  # no collapse: σ2 stays well away from 0
        assert model.loss(np, act, res.theta[r, -1][None], X, y, w)[0] < 1e-20
