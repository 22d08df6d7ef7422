"""Theorem 2 targets, F*, and the not-applicable cases."""

import numpy as np
import pytest
from conftest import unit_rows

from simbias import model, theory
from simbias.activations import OddPower


def theta_from_z(Z, X):
    """A θ with Θ Xᵀ = Z (minimum norm; needs linearly independent x_i)."""
    return np.linalg.lstsq(X, Z.T, rcond=None)[0].T


@pytest.mark.parametrize("k,nu", [(1, 0.1), (1, 0.0), (2, 0.2)])
def test_equal_weights_target_is_inverse_of_y_over_m(rng, k, nu):
    act = OddPower(k, nu)
    y = rng.standard_normal(4)
    z = theory.target_z(act, y, np.ones(7))
    np.testing.assert_allclose(z, np.tile(act.inverse(y / 7), (7, 1)), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k", [1, 2])
def test_targets_are_stationary_and_minimal_on_M(rng, k):
    """At z*, ∇_M F = 0 and Σ_j w_j φ(z*_ji) = y_i; random points of M have F ≥ F*."""
    act = OddPower(k, 0.2)
    m, d, n = 6, 5, 3
    X = unit_rows(rng, n, d)
    y = rng.standard_normal(n)
    w = rng.uniform(0.3, 2.0, m) * rng.choice([-1, 1], m)
    Zs = theory.target_z(act, y, w)
    np.testing.assert_allclose(w @ act.phi(Zs), y, atol=1e-12)
    th = theta_from_z(Zs, X)[None]
    g = model.riemannian_grad(np, act, th, X, w)
    assert model.norm(np, g)[0] < 1e-10
    Fs = theory.min_sharpness(act, Zs, X, w)
    others, ok = model.newton_retract(np, act, 0.5 * rng.standard_normal((40, m, d)), X, y, w)
    assert ok.sum() > 20
    assert np.all(model.sharpness(np, act, others[ok], X, w) >= Fs - 1e-10)


def test_cubic_unequal_weights_give_rank_one(rng):
    """For φ = z³ + νz, φ''(z) = 6z so z_ji = a_i/(12 w_j): Z* is rank one."""
    act = OddPower(1, 0.1)
    Zs = theory.target_z(act, rng.standard_normal(4), rng.uniform(0.5, 2, 6))
    sv = np.linalg.svd(Zs, compute_uv=False)
    assert sv[1] < 1e-12 * sv[0]


def test_not_applicable_is_explicit_never_infinite(rng):
    X = unit_rows(rng, 5, 3)  # n > d
    a = theory.theorem3_applicability(X, OddPower(1, 0.1))
    assert not a.ok and "n = 5 > d = 3" in a.reason
    a = theory.theorem3_applicability(unit_rows(rng, 3, 3), OddPower(1, 0.0))
    assert not a.ok and "ϱ1" in a.reason
    a = theory.theorem3_applicability(unit_rows(rng, 3, 3), OddPower(2, 0.1))
    assert not a.ok and "ϱ2" in a.reason
    c = theory.constants(OddPower(1, 0.0), unit_rows(rng, 3, 3))
    assert np.isnan(theory.theorem3_time(1.0, c, 1e-6))
    assert np.isnan(theory.lemma6_bound(1e-3, c))
    assert theory.theorem3_applicability(unit_rows(rng, 3, 4), OddPower(1, 0.1)).ok


def test_theorem3_time_formula():
    c = theory.Constants(mu=0.02, rho1=0.1, rho2=6.0, beta=0.2, beta_paper=0.01)
    expected = 3.0 / (0.02 * 0.04) + np.log(0.04 / (0.01 * 36 * 1e-12)) / (0.1 * 6 * 0.02)
    assert theory.theorem3_time(3.0, c, 1e-6) == pytest.approx(expected)
