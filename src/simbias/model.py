"""The two-layer model, its loss, the sharpness F and the geometry of M.

Shapes (batched over replicas): ``theta (R, m, d)``, ``X (n, d)``, ``y (n,)``,
``w (m,)``, ``Z = Θ Xᵀ (R, m, n)``. Every function takes the array module ``xp``
(NumPy or CuPy) first; formulas follow docs/math.md and the paper's §3 and
Lemmas 1 and 3.
"""

from __future__ import annotations

from typing import Any

Array = Any


def preactivations(xp, theta: Array, X: Array) -> Array:
    """Z = Θ Xᵀ, z_ji = θ_j · x_i (the feature matrix)."""
    return xp.matmul(theta, X.T)


def outputs(xp, act, Z: Array, w: Array) -> Array:
    """f_i = Σ_j w_j φ(z_ji)  (paper eq. 1, with second-layer weights)."""
    return xp.matmul(w, act.phi(Z))


def residual(xp, act, theta: Array, X: Array, y: Array, w: Array) -> Array:
    """r_i = f_i(θ) − y_i."""
    return outputs(xp, act, preactivations(xp, theta, X), w) - y


def loss(xp, act, theta: Array, X: Array, y: Array, w: Array) -> Array:
    """L(θ) = Σ_i (f_i − y_i)²  (paper eq. 2: a sum, no 1/2)."""
    r = residual(xp, act, theta, X, y, w)
    return xp.sum(r * r, axis=-1)


def j_vec(xp, act, Z: Array, X: Array, w: Array, g: Array) -> Array:
    """J g for g of shape (R, m, d): (J g)_i = Σ_j w_j φ'(z_ji) x_i · g_j."""
    return xp.einsum("j,rji,rji->ri", w, act.d1(Z), xp.matmul(g, X.T))


def jt_vec(xp, act, Z: Array, X: Array, w: Array, lam: Array) -> Array:
    """Jᵀ λ for λ of shape (R, n): block j is Σ_i λ_i w_j φ'(z_ji) x_i."""
    coeff = w[None, :, None] * act.d1(Z) * lam[:, None, :]
    return xp.matmul(coeff, X)


def jacobian(xp, act, theta: Array, X: Array, w: Array) -> Array:
    """Dense J = Df, shape (R, n, m·d); row i, block j = w_j φ'(z_ji) x_i (Lemma 1)."""
    Z = preactivations(xp, theta, X)
    R, m, n = Z.shape
    blocks = w[None, :, None, None] * act.d1(Z)[..., None] * X[None, None, :, :]
    return xp.transpose(blocks, (0, 2, 1, 3)).reshape(R, n, m * X.shape[1])


def gram_jjt(xp, act, Z: Array, X: Array, w: Array) -> Array:
    """J Jᵀ = (Φ'ᵀ diag(w²) Φ') ∘ (X Xᵀ), shape (R, n, n)."""
    d1 = act.d1(Z)
    return xp.einsum("j,rji,rjk->rik", w * w, d1, d1) * xp.matmul(X, X.T)[None]


def grad_loss(xp, act, theta: Array, X: Array, y: Array, w: Array) -> Array:
    """∇L = 2 Jᵀ (f − y)."""
    Z = preactivations(xp, theta, X)
    return 2.0 * jt_vec(xp, act, Z, X, w, outputs(xp, act, Z, w) - y)


def sharpness(xp, act, theta: Array, X: Array, w: Array) -> Array:
    """F(θ) = Σ_i Σ_j w_j² φ'(z_ji)² ‖x_i‖²  (Lemma 3; on M, Tr ∇²L = 2F)."""
    Z = preactivations(xp, theta, X)
    xn2 = xp.sum(X * X, axis=1)
    return xp.einsum("j,rji,i->r", w * w, act.d1(Z) ** 2, xn2)


def grad_sharpness(xp, act, theta: Array, X: Array, w: Array) -> Array:
    """∂F/∂θ_j = Σ_i 2 w_j² φ'(z_ji) φ''(z_ji) ‖x_i‖² x_i."""
    Z = preactivations(xp, theta, X)
    xn2 = xp.sum(X * X, axis=1)
    coeff = 2.0 * (w * w)[None, :, None] * act.d1(Z) * act.d2(Z) * xn2[None, None, :]
    return xp.matmul(coeff, X)


def tangent_project(xp, act, theta: Array, X: Array, w: Array, g: Array) -> Array:
    """P g = g − Jᵀ (J Jᵀ)⁻¹ J g: projection onto the tangent space of M (Lemma 1)."""
    Z = preactivations(xp, theta, X)
    lam = xp.linalg.solve(gram_jjt(xp, act, Z, X, w), j_vec(xp, act, Z, X, w, g)[..., None])
    return g - jt_vec(xp, act, Z, X, w, lam[..., 0])


def riemannian_grad(xp, act, theta: Array, X: Array, w: Array) -> Array:
    """∇_M F = P ∇F (paper eq. 3's Riemannian gradient)."""
    return tangent_project(xp, act, theta, X, w, grad_sharpness(xp, act, theta, X, w))


def norm(xp, g: Array) -> Array:
    """Euclidean norm of each replica's (m, d) block."""
    return xp.sqrt(xp.sum(g * g, axis=(-2, -1)))


def newton_retract(
    xp, act, theta: Array, X: Array, y: Array, w: Array, tol: float = 1e-13, max_iter: int = 50
) -> tuple[Array, Array]:
    """Gauss–Newton back onto M: θ ← θ − Jᵀ(JJᵀ)⁻¹(f − y) until max|f − y| ≤ tol.

    Returns the new θ and a boolean mask of replicas whose residual reached ``tol``.
    The step is the minimum-norm one, so the component of θ orthogonal to the
    data span is untouched.
    """
    theta = theta.copy()
    for _ in range(max_iter):
        Z = preactivations(xp, theta, X)
        r = outputs(xp, act, Z, w) - y
        res = xp.max(xp.abs(r), axis=-1)
        active = res > tol
        if not bool(xp.any(active)):
            break
        lam = _solve_psd(xp, gram_jjt(xp, act, Z, X, w), r)
        step = jt_vec(xp, act, Z, X, w, lam)
        theta = xp.where(active[:, None, None], theta - step, theta)
    r = residual(xp, act, theta, X, y, w)
    ok = xp.all(xp.isfinite(r), axis=-1) & (xp.max(xp.abs(r), axis=-1) <= tol)
    return theta, ok


def _solve_psd(xp, A: Array, b: Array) -> Array:
    """Solve A x = b per replica, falling back to least squares for singular A."""
    try:
        return xp.linalg.solve(A, b[..., None])[..., 0]
    except Exception:  # singular Gram (e.g. φ'(z) = 0 for the pure cube)
        pinv = xp.linalg.pinv(A)
        return xp.matmul(pinv, b[..., None])[..., 0]


def singular_values(xp, A: Array) -> Array:
    """Singular values of each matrix in a batch, descending."""
    return xp.linalg.svd(A, compute_uv=False)


def flow_velocity(xp, act, theta: Array, X: Array, y: Array, w: Array, kappa: float = 1.0) -> Array:
    """dθ/dτ = −∇_M F(θ) − κ Jᵀ(JJᵀ)⁻¹(f − y)  (paper eq. 3 on the τ clock).

    The second term vanishes on M; it pulls a numerically drifting iterate back
    (a Baumgarte-type stabilisation), so the integrator need not stay exactly on M.
    """
    Z = preactivations(xp, theta, X)
    gF = grad_sharpness(xp, act, theta, X, w)
    rhs = xp.stack([j_vec(xp, act, Z, X, w, gF), kappa * (outputs(xp, act, Z, w) - y)], axis=-1)
    lam = xp.linalg.solve(gram_jjt(xp, act, Z, X, w), rhs)
    return -(gF - jt_vec(xp, act, Z, X, w, lam[..., 0])) - jt_vec(xp, act, Z, X, w, lam[..., 1])
