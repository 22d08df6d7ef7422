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


def test_weight_scale_only_for_constant_nonzero_weights():
    assert theory.weight_scale(np.full(5, 0.25)) == pytest.approx(0.0625)
    assert theory.weight_scale(np.full(5, -2.0)) == pytest.approx(4.0)
    assert theory.weight_scale(np.ones(5)) == 1.0
    assert theory.weight_scale(np.array([1.0, 1.0, 0.5])) is None
    assert theory.weight_scale(np.zeros(3)) is None


def test_unequal_weights_bounds_not_applicable(rng):
    X = unit_rows(rng, 3, 3)
    act = OddPower(1, 0.1)
    assert theory.bounds_applicability(X, act, np.full(6, 0.05)).ok
    a = theory.bounds_applicability(X, act, rng.uniform(0.5, 1.5, 6))
    assert not a.ok and "unequal second-layer weights" in a.reason


@pytest.mark.parametrize("cw", [0.25, 0.05, -3.0])
def test_constant_weights_rescale_gradient_exactly(rng, cw):
    """w_j = c: F = c²F₁ and ∇_M F = c²∇_M F₁ at every θ (M is the w = 1 manifold for labels y/c)."""
    act = OddPower(1, 0.1)
    m, d, n = 5, 4, 3
    X = unit_rows(rng, n, d)
    th = 0.5 * rng.standard_normal((4, m, d))
    ones, wc = np.ones(m), np.full(m, cw)
    np.testing.assert_allclose(
        model.sharpness(np, act, th, X, wc), cw**2 * model.sharpness(np, act, th, X, ones)
    )
    np.testing.assert_allclose(
        model.riemannian_grad(np, act, th, X, wc),
        cw**2 * model.riemannian_grad(np, act, th, X, ones),
        atol=1e-13,
    )
    # the bound functions are the w = 1 bounds in the time s = c²τ
    c = theory.constants(act, X)
    s2 = cw**2
    assert theory.grad_eps_time(s2 * 3.0, c, s2 * 1e-6, s2) == pytest.approx(
        theory.grad_eps_time(3.0, c, 1e-6) / s2
    )
    assert theory.theorem3_time(s2 * 3.0, c, 1e-6, s2) == pytest.approx(
        theory.theorem3_time(3.0, c, 1e-6) / s2
    )
    assert theory.lemma6_bound(s2 * 1e-3, c, s2) == pytest.approx(theory.lemma6_bound(1e-3, c))


def test_eq16_and_eq17_formulas():
    """eq. (16) bounds the gradient time, eq. (17) = (C.1) the distance time; (17) is (16) at ε√μϱ1ϱ2."""
    c = theory.Constants(mu=0.02, rho1=0.1, rho2=6.0, beta=0.2, beta_paper=0.01)
    e16 = 3.0 / (0.02 * 0.04) + np.log(0.02 * 0.04 / 1e-12) / (0.1 * 6 * 0.02)
    assert theory.grad_eps_time(3.0, c, 1e-6) == pytest.approx(e16)
    eps_z = 1e-6
    assert theory.theorem3_time(3.0, c, eps_z) == pytest.approx(
        theory.grad_eps_time(3.0, c, eps_z * np.sqrt(0.02) * 0.1 * 6.0)
    )


def test_bounds_at_a_tiny_epsilon_or_large_weights_are_finite():
    """theory.epsilon: 1e-300 crashed the comparison (ε² underflows to 0: ZeroDivisionError), and
    so did constant weights of 1e100 (ε₁ = ε/c² underflows). The logs give the exact value."""
    c = theory.Constants(mu=0.02, rho1=0.1, rho2=6.0, beta=0.2, beta_paper=0.01)
    eps = 1e-300
    eq16 = 3.0 / (0.02 * 0.04) + (np.log(0.02 * 0.04) - 2 * np.log(eps)) / (0.1 * 6 * 0.02)
    eq17 = 3.0 / (0.02 * 0.04) + 2 * (np.log(0.2) - np.log(0.6) - np.log(eps)) / (0.1 * 6 * 0.02)
    assert theory.grad_eps_time(3.0, c, eps) == pytest.approx(eq16, rel=1e-12)
    assert theory.theorem3_time(3.0, c, eps) == pytest.approx(eq17, rel=1e-12)
    # constant weights c = 1e100 (scale c² = 1e200): the w = 1 bound in the time s = c²τ
    s2 = 1e200
    assert theory.grad_eps_time(s2 * 3.0, c, 1e-6, s2) == pytest.approx(
        theory.grad_eps_time(3.0, c, 1e-6 / s2) / s2, rel=1e-12
    )
    assert np.isfinite(theory.grad_eps_time(s2 * 3.0, c, 1e-6, s2))


def test_a_theorem2_point_that_overflows_is_not_applicable(rng):
    """Labels near 1e300 put F* = Σ w²φ'(z*)²‖x‖² past float64: comparison.nc held F* = inf."""
    act = OddPower(1, 0.1)
    X = unit_rows(rng, 2, 3)
    z, F, app = theory.theorem2_target(act, X, np.array([1e299, 1e300]), np.ones(4))
    assert z is None and F is None and not app.ok
    assert "overflows float64" in app.reason and "1e+300" in app.reason
    z, F, app = theory.theorem2_target(act, X, np.array([0.3, 0.7]), np.ones(4))
    assert app.ok and np.isfinite(F)
