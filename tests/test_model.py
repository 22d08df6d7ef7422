"""Finite-difference checks of ∇L, ∇F and J, and the geometry of M."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simbias import model
from simbias.activations import OddPower


def fd_grad(fun, theta, h=1e-6):
    g = np.zeros_like(theta)
    for idx in np.ndindex(theta.shape):
        e = np.zeros_like(theta)
        e[idx] = h
        g[idx] = (fun(theta + e) - fun(theta - e)) / (2 * h)
    return g


def test_grad_loss_fd(small_problem):
    act, X, y, w, theta = small_problem
    th = theta[:1]
    fd = fd_grad(lambda t: model.loss(np, act, t, X, y, w)[0], th)
    np.testing.assert_allclose(model.grad_loss(np, act, th, X, y, w), fd, rtol=1e-6, atol=1e-8)


def test_grad_sharpness_fd(small_problem):
    act, X, y, w, theta = small_problem
    w = np.linspace(0.5, 1.5, w.size)
    th = theta[1:2]
    fd = fd_grad(lambda t: model.sharpness(np, act, t, X, w)[0], th)
    np.testing.assert_allclose(model.grad_sharpness(np, act, th, X, w), fd, rtol=1e-6, atol=1e-8)


def test_jacobian_fd_and_products(small_problem):
    act, X, y, w, theta = small_problem
    w = np.linspace(-1.0, 2.0, w.size)
    th = theta[2:3]
    J = model.jacobian(np, act, th, X, w)[0]
    h = 1e-6
    for col in range(J.shape[1]):
        e = np.zeros(th.size)
        e[col] = h
        e = e.reshape(th.shape)
        fp = model.outputs(np, act, model.preactivations(np, th + e, X), w)[0]
        fm = model.outputs(np, act, model.preactivations(np, th - e, X), w)[0]
        np.testing.assert_allclose(J[:, col], (fp - fm) / (2 * h), rtol=1e-6, atol=1e-8)
    Z = model.preactivations(np, th, X)
    g = np.random.default_rng(0).standard_normal(th.shape)
    lam = np.random.default_rng(1).standard_normal((1, X.shape[0]))
    np.testing.assert_allclose(model.j_vec(np, act, Z, X, w, g)[0], J @ g.ravel(), rtol=1e-12)
    np.testing.assert_allclose(model.jt_vec(np, act, Z, X, w, lam).ravel(), J.T @ lam[0], rtol=1e-12)
    np.testing.assert_allclose(model.gram_jjt(np, act, Z, X, w)[0], J @ J.T, rtol=1e-12)


def test_sharpness_is_half_hessian_trace_on_manifold(small_problem):
    """On M, Tr ∇²L = 2F (docs/math.md): check with a finite-difference Hessian trace."""
    act, X, y, w, theta = small_problem
    th, ok = model.newton_retract(np, act, theta[:1], X, y, w)
    assert ok.all()
    h = 1e-4
    L = lambda t: model.loss(np, act, t, X, y, w)[0]  # noqa: E731
    tr = 0.0
    for idx in np.ndindex(th.shape):
        e = np.zeros_like(th)
        e[idx] = h
        tr += (L(th + e) - 2 * L(th) + L(th - e)) / h**2
    assert tr == pytest.approx(2 * model.sharpness(np, act, th, X, w)[0], rel=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(1, 6),
    d=st.integers(1, 5),
    n=st.integers(1, 5),
    seed=st.integers(0, 2**31),
    k=st.integers(1, 2),
)
def test_projection_and_retraction_properties(m, d, n, seed, k):
    """P is a projection onto ker J; Newton lands on M; the Riemannian gradient is tangent."""
    rng = np.random.default_rng(seed)
    act = OddPower(k=k, nu=0.5)
    X = rng.uniform(0, 1, (n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    w = np.ones(m)
    theta = 0.5 * rng.standard_normal((2, m, d))
    Z = model.preactivations(np, theta, X)
    G = model.gram_jjt(np, act, Z, X, w)
    if np.linalg.cond(G).max() > 1e8:
        return  # J not of full row rank (n > d with dependent rows etc.): P undefined
    g = rng.standard_normal(theta.shape)
    Pg = model.tangent_project(np, act, theta, X, w, g)
    np.testing.assert_allclose(model.j_vec(np, act, Z, X, w, Pg), 0, atol=1e-8 * (1 + np.abs(g).max()))
    np.testing.assert_allclose(model.tangent_project(np, act, theta, X, w, Pg), Pg, atol=1e-8)
    y = model.outputs(np, act, Z, w)[0] + 0.05 * rng.standard_normal(n)
    th, ok = model.newton_retract(np, act, theta, X, y, w)
    if ok.all():
        assert np.all(model.loss(np, act, th, X, y, w) <= 1e-20)
