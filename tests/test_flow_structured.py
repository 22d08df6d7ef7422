"""The structured flow integrator: reduced coordinates, analytic Jacobian, Woodbury solves,
the compiled fast path, and agreement with the dense reference integrator."""

import numpy as np
import pytest
from conftest import unit_rows

from simbias import flow, flow_field, flow_kernels, flow_reference, model, sgd, theory
from simbias.activations import CubicQuadratic, OddPower, Softplus, Tanh

ACTS = [OddPower(1, 0.1), OddPower(2, 0.2), OddPower(1, 0.0), CubicQuadratic(0.5), Tanh(), Softplus()]


def problem(rng, m, d, n, act, kappa=1.0, compiled=None):
    X = unit_rows(rng, n, d) * rng.uniform(0.5, 2.0, (n, 1))  # ‖x_i‖ ≠ 1: every factor ‖x_i‖² counts
    y = rng.standard_normal(n)
    w = rng.uniform(0.5, 2.0, m) * np.where(np.arange(m) % 3 == 0, -1, 1)
    theta = 0.5 * rng.standard_normal((m, d))
    red = flow_field.Reduction.of(X)
    A, perp = red.reduce(theta)
    return X, y, w, theta, red, A, flow_field.Problem(act, red.B, y, w, kappa=kappa, compiled=compiled)


@pytest.mark.parametrize("act", ACTS, ids=lambda a: a.describe())
@pytest.mark.parametrize("mdn", [(7, 5, 3), (4, 2, 3)], ids=["n<d", "n>d"])
def test_reduced_field_is_the_flow(act, mdn):
    """In reduced coordinates the velocity is model.flow_velocity, and it never leaves span(X)."""
    rng = np.random.default_rng(1)
    X, y, w, theta, red, A, p = problem(rng, *mdn, act, kappa=0.7, compiled=False)
    full = model.flow_velocity(np, act, theta[None], X, y, w, kappa=0.7)[0]
    v = p.velocity(A)
    np.testing.assert_allclose(v @ red.V.T, full, atol=1e-11 * np.abs(full).max())
    assert np.abs(full - full @ red.V @ red.V.T).max() <= 1e-11 * np.abs(full).max()
    g = model.norm(np, model.riemannian_grad(np, act, theta[None], X, w))[0]
    assert p.grad_norm(A) == pytest.approx(g, rel=1e-10)


@pytest.mark.parametrize("act", ACTS, ids=lambda a: a.describe())
@pytest.mark.parametrize("mdn", [(7, 5, 3), (5, 3, 4)], ids=["n<d", "n>d"])
def test_analytic_jacobian_matches_finite_differences(act, mdn):
    rng = np.random.default_rng(2)
    _, _, _, _, _, A, p = problem(rng, *mdn, act, kappa=1.0, compiled=False)
    jac = flow_field.FlowJacobian(p, flow_field.field(p, A))
    Jd = jac.dense()
    a = A.ravel()
    fd = np.empty_like(Jd)
    for k in range(a.size):  # central differences, error O(h²) ≈ 1e-10 relative
        e = np.zeros_like(a)
        e[k] = 1e-5 * max(1.0, abs(a[k]))
        vp = p.velocity((a + e).reshape(A.shape)).ravel()
        vm = p.velocity((a - e).reshape(A.shape)).ravel()
        fd[:, k] = (vp - vm) / (2 * e[k])
    assert np.abs(Jd - fd).max() <= 1e-6 * np.abs(Jd).max()
    x = rng.standard_normal(a.size)
    np.testing.assert_allclose(jac.matvec(x), Jd @ x, atol=1e-12 * np.abs(Jd).max() * np.abs(x).sum())


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("c", [1e-3, 0.3, 50.0])
def test_woodbury_solve_matches_dense(compiled, c):
    rng = np.random.default_rng(3)
    _, _, _, _, _, A, p = problem(rng, 9, 6, 4, OddPower(1, 0.1), compiled=compiled)
    jac = flow_field.FlowJacobian(p, flow_field.field(p, A))
    M = np.eye(A.size) - c * jac.dense()
    b = rng.standard_normal(A.size)
    x = jac.factor(c).solve(b)
    np.testing.assert_allclose(x, np.linalg.solve(M, b), rtol=1e-9, atol=1e-12 * np.abs(x).max())


@pytest.mark.parametrize("act", [OddPower(1, 0.1), OddPower(2, 0.2), OddPower(1, 0.0)], ids=str)
def test_compiled_kernels_are_pinned_to_numpy(act):
    """The numba fast path does the NumPy reference's arithmetic (to round-off)."""
    rng = np.random.default_rng(4)
    _, _, _, _, _, A, pn = problem(rng, 11, 7, 5, act, compiled=False)
    pc = flow_field.Problem(act, pn.B, pn.y, pn.w, compiled=True)
    assert pc.compiled and not pn.compiled
    v = pn.velocity(A)
    np.testing.assert_allclose(pc.velocity(A), v, atol=1e-13 * np.abs(v).max())
    assert pc.grad_norm(A) == pytest.approx(pn.grad_norm(A), rel=1e-12)
    with pytest.raises(ValueError, match="no compiled flow kernel"):
        flow_field.Problem(Tanh(), pn.B, pn.y, pn.w, compiled=True)
    assert flow_kernels.velocity is not None


@pytest.mark.parametrize("wkind", ["equal", "unequal"])
def test_structured_and_dense_integrators_agree(wkind):
    """Same flow, same tolerances: the two integrators end at the same point and record the same F."""
    rng = np.random.default_rng(5)
    act = OddPower(1, 0.1)
    m, d, n = 6, 4, 3
    X = unit_rows(rng, n, d)
    y = rng.standard_normal(n)
    w = np.ones(m) if wkind == "equal" else rng.uniform(0.5, 2.0, m)
    theta0 = 0.5 * rng.standard_normal((m, d))
    kw = dict(tol=1e-10, tau_max=1e4, records=30)
    new = flow.run_flow(act, theta0, X, y, w, **kw)
    old = flow_reference.run_flow_dense(act, theta0, X, y, w, **kw)
    assert new.status == old.status == "converged"
    np.testing.assert_allclose(new.theta_end, old.theta_end, atol=1e-7)
    both = np.isfinite(new.sharpness) & np.isfinite(old.sharpness)
    assert both.sum() >= 10
    np.testing.assert_allclose(new.sharpness[both], old.sharpness[both], rtol=1e-6)
    assert new.tau_eps == pytest.approx(old.tau_eps, rel=1e-3)


@pytest.mark.parametrize("mdn", [(64, 32, 16), (100, 30, 15)], ids=str)
def test_flow_from_sgd_reaches_theorem2_point_at_research_size(mdn):
    """Label-noise SGD for a while, then the flow from its last iterate: within 1e-6 of z*."""
    m, d, n = mdn
    rng = np.random.default_rng(6)
    act = OddPower(1, 0.1)
    X = rng.uniform(0, 1, (n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = rng.uniform(0, 1, n)
    w = np.ones(m)
    theta0 = 0.1 * rng.standard_normal((1, m, d))
    res = sgd.label_noise_sgd(
        np, act, theta0, X, y, w, eta=0.02, sigma=0.1, steps=3000, record_steps=np.array([0, 3000]), seed=0
    )
    last = res.theta[0, -1]
    assert np.all(np.isfinite(last))
    zs = theory.target_z(act, y, w)
    Fs = theory.min_sharpness(act, zs, X, w)
    out = flow.run_flow(act, last, X, y, w, tol=1e-9, records=20, z_star=zs, F_star=Fs)
    assert out.status == "converged", (out.status, out.notes)
    assert np.max(np.abs(out.theta_end @ X.T - zs)) <= 1e-6
    ok = np.isfinite(out.loss)
    assert np.all(out.loss[ok] <= 1e-20)
    assert np.all(np.diff(out.sharpness[ok]) <= 1e-12 * Fs)


def test_memory_does_not_grow_like_md_squared():
    """No (m·r)² array anywhere: at m·r = 2000 a dense Jacobian or identity alone is 32 MB."""
    import tracemalloc

    rng = np.random.default_rng(7)
    m, d, n = 200, 20, 10
    X = unit_rows(rng, n, d)
    y = rng.uniform(0, 1, n)
    w = np.ones(m)
    theta = 0.1 * rng.standard_normal((m, d))
    act = OddPower(1, 0.1)
    flow.run_flow(act, theta[:5], X, y, w[:5], tol=1e-3, tau_max=1.0, records=3)  # compile first
    tracemalloc.start()
    try:
        flow.run_flow(act, theta, X, y, w, tol=1e-12, tau_max=1.0, records=5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8e6, peak  # m·d·n doubles = 0.3 MB; records 5·m·d doubles = 0.2 MB
