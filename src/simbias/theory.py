"""The paper's targets and bounds: Theorem 2 (z*, F*), Theorem 3 and Lemma 6.

Every function returns plain NumPy values. Where an assumption fails the result
is ``Applicability(ok=False, reason=...)`` and the numbers are NaN, never ∞.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq


@dataclass(frozen=True)
class Applicability:
    ok: bool
    reason: str = ""


def gram_min_eig(X: np.ndarray) -> float:
    """μ = λ_min(X Xᵀ) (Assumption 2; needs n ≤ d to be positive)."""
    return float(np.linalg.eigvalsh(X @ X.T)[0])


def theorem2_applicability(X: np.ndarray, act, rel_tol: float = 1e-10) -> Applicability:
    """Theorem 2 needs linearly independent x_i (so n ≤ d) and φ' > 0, φ''' > 0 off a null set."""
    n, d = X.shape
    failures = act.theorem2_failures()
    if failures:
        return Applicability(False, "; ".join(failures))
    if n > d:
        return Applicability(False, f"n = {n} > d = {d}: the x_i cannot be linearly independent")
    mu = gram_min_eig(X)
    if mu <= rel_tol * np.linalg.eigvalsh(X @ X.T)[-1]:
        return Applicability(False, f"data are (numerically) linearly dependent: μ = {mu:.3g}")
    return Applicability(True)


def theorem3_applicability(X: np.ndarray, act) -> Applicability:
    """Theorem 3 also needs ϱ1 > 0, ϱ2 > 0 (Assumption 1), β > 0 (Assumption 3), ‖x_i‖ = 1."""
    a = theorem2_applicability(X, act)
    if not a.ok:
        return a
    reasons = []
    if act.rho1 <= 0:
        reasons.append(f"ϱ1 = inf φ' = {act.rho1:g} (Assumption 1 fails, e.g. ν = 0)")
    if act.rho2 <= 0:
        reasons.append(f"ϱ2 = inf φ''' = {act.rho2:g} (Assumption 1 fails: φ''' vanishes at 0)")
    if act.beta <= 0:
        reasons.append("β = 0 (Assumption 3 fails)")
    norms = np.linalg.norm(X, axis=1)
    if not np.allclose(norms, 1.0, rtol=1e-12, atol=1e-12):
        reasons.append("the x_i are not unit norm")
    return Applicability(not reasons, "; ".join(reasons))


def target_z(act, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Theorem 2 point z*_ji (m, n): φ''(z_ji) = a_i / (2 w_j), a_i fixed by Σ_j w_j φ(z_ji) = y_i.

    For w_j = 1 every neuron shares z_i = φ⁻¹(y_i / m) (paper eq. 4). The map
    a ↦ Σ_j w_j φ((φ'')⁻¹(a/(2w_j))) is strictly increasing (derivative
    Σ_j φ'/(2φ''') > 0), so a_i is a 1-D monotone root.
    """
    y = np.asarray(y, dtype=float)
    w = np.asarray(w, dtype=float)
    if np.any(w == 0):
        raise ValueError("Theorem 2 targets need non-zero second-layer weights")

    def z_of(a: float) -> np.ndarray:
        return act.d2_inverse(a / (2.0 * w))

    def g(a: float, yi: float) -> float:
        return float(np.sum(w * act.phi(z_of(a))) - yi)

    Z = np.empty((w.size, y.size))
    for i, yi in enumerate(y):
        lo, hi = -1.0, 1.0
        while g(lo, yi) > 0:
            lo *= 2.0
        while g(hi, yi) < 0:
            hi *= 2.0
        a = brentq(g, lo, hi, args=(yi,), xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)
        Z[:, i] = z_of(a)
    return Z


def min_sharpness(act, z_star: np.ndarray, X: np.ndarray, w: np.ndarray) -> float:
    """F* = Σ_ij w_j² φ'(z*_ji)² ‖x_i‖² (F at the Theorem 2 point)."""
    xn2 = np.sum(X * X, axis=1)
    return float(np.einsum("j,ji,i->", w * w, act.d1(z_star) ** 2, xn2))


def theorem2_target(act, X: np.ndarray, y: np.ndarray, w: np.ndarray):
    """Theorem 2 point z* and F* = F(z*), or (None, None, reason) when Theorem 2 does not apply."""
    app = theorem2_applicability(X, act)
    if app.ok and np.any(w == 0):
        app = Applicability(False, "some second-layer weight w_j = 0")
    if not app.ok:
        return None, None, app
    with np.errstate(over="ignore", invalid="ignore"):
        z = target_z(act, y, w)
        F = min_sharpness(act, z, X, w)
    if not (np.all(np.isfinite(z)) and np.isfinite(F)):
        big = float(np.max(np.abs(y)))
        return (
            None,
            None,
            Applicability(
                False,
                f"the Theorem 2 point overflows float64 (F* = Σ w_j² φ'(z*_ji)² ‖x_i‖² is {F:.3g}; "
                f"labels up to |y| = {big:.3g})",
            ),
        )
    return z, F, app


@dataclass(frozen=True)
class Constants:
    mu: float
    rho1: float
    rho2: float
    beta: float
    beta_paper: float


def constants(act, X: np.ndarray) -> Constants:
    """μ, ϱ1, ϱ2 and β for this activation and data (docs/math.md, "Assumptions and constants")."""
    return Constants(gram_min_eig(X), act.rho1, act.rho2, act.beta, act.beta_paper)


def weight_scale(w: np.ndarray) -> float | None:
    """c² when every second-layer weight equals one c ≠ 0, else None.

    With w_j = c the sharpness is F = c²F₁ (F₁: weights 1) and M is the zero-loss
    manifold of weights 1 with labels y/c, so ∇_M F = c²∇_M F₁ and the flow of F
    at time τ is the w = 1 flow at time s = c²τ. Theorem 3 and Lemma 6 (proved for
    w_j = 1, independent of y) then hold after this exact rescaling (docs/theory.md).
    """
    w = np.asarray(w, dtype=float)
    if w.size == 0 or w[0] == 0 or not np.all(w == w[0]):
        return None
    return float(w[0] ** 2)


def bounds_applicability(X: np.ndarray, act, w: np.ndarray) -> Applicability:
    """Where Theorem 3 and Lemma 6 are proved: their assumptions, and constant weights w_j = c ≠ 0."""
    a = theorem3_applicability(X, act)
    if not a.ok:
        return a
    if weight_scale(w) is None:
        w = np.asarray(w, dtype=float)
        return Applicability(
            False,
            f"unequal second-layer weights (w_j from {w.min():.3g} to {w.max():.3g}): Theorem 3 and "
            "Lemma 6 are proved for w_j = 1, and carry over exactly only to constant w_j = c",
        )
    return a


def _positive(c: Constants) -> bool:
    return min(c.mu, c.rho1, c.rho2, c.beta) > 0


def grad_eps_time(F0: float, c: Constants, eps: float, scale: float = 1.0) -> float:
    """Paper eq. (16): ‖∇_M F‖ ≤ ε for all τ ≥ F₁(θ0)/(μβ²) + log(max(μβ²/ε₁², 1))/(ϱ1ϱ2μ).

    With constant weights (``scale`` = c², :func:`weight_scale`) in the w = 1 time
    s = c²τ, with F₁ = F/c² and ε₁ = ε/c²; the result is in the regime's own τ.
    NaN when a constant is not positive.
    """
    if not _positive(c):
        return float("nan")
    F1 = F0 / scale
    # log(μβ²/ε₁²) in logs: ε₁² underflows to 0 for ε₁ below 1e-154 (theory.epsilon: 1e-300)
    log_ratio = np.log(c.mu) + 2 * np.log(c.beta) - 2 * (np.log(eps) - np.log(scale))
    s = F1 / (c.mu * c.beta**2) + max(log_ratio, 0.0) / (c.rho1 * c.rho2 * c.mu)
    return float(s / scale)


def theorem3_time(F0: float, c: Constants, eps: float, scale: float = 1.0) -> float:
    """Theorem 3 (C.1) = eq. (17): max|z − z*| ≤ ε for all
    τ ≥ F₁(θ0)/(μβ²) + log(max(β²/(ϱ1²ϱ2²ε²), 1))/(ϱ1ϱ2μ).

    It is eq. (16) at ε₁ = ε√μ ϱ1ϱ2 (Lemma 6), so it bounds the time to the
    *distance* ε, not to the gradient ε. ``scale`` = c² as in :func:`grad_eps_time`
    (z and ε are not rescaled). NaN when a constant is not positive.
    """
    if not _positive(c):
        return float("nan")
    F1 = F0 / scale
    # log(β²/(ϱ1²ϱ2²ε²)) in logs, for the same reason as in grad_eps_time
    log_ratio = 2 * (np.log(c.beta) - np.log(c.rho1) - np.log(c.rho2) - np.log(eps))
    s = F1 / (c.mu * c.beta**2) + max(log_ratio, 0.0) / (c.rho1 * c.rho2 * c.mu)
    return float(s / scale)


def lemma6_bound(grad_norm, c: Constants, scale: float = 1.0):
    """Lemma 6 / Theorem 3 (C.2): ‖∇_M F‖ ≤ δ ⇒ max|z − z*| ≤ δ / (c² √μ ϱ1 ϱ2) (``scale`` = c²)."""
    if min(c.mu, c.rho1, c.rho2) <= 0:
        return np.full(np.shape(grad_norm), np.nan)
    return np.asarray(grad_norm) / (scale * np.sqrt(c.mu) * c.rho1 * c.rho2)


@dataclass(frozen=True)
class StationarySpread:
    """Label-noise SGD's stationary fluctuation around a point θ of M (linearised; docs/theory.md)."""

    loss_mean: float  # E[L] = Σ_k ησ²λ_k / (1 − ηλ_k), λ_k the eigenvalues of JJᵀ (≈ ησ²F)
    z_std: np.ndarray  # (m, n) standard deviation of each z_ji
    F_std: float  # standard deviation of F (first order: ∇F · δθ)


def sgd_stationary_spread(act, theta: np.ndarray, X: np.ndarray, w: np.ndarray, eta: float, sigma: float):
    """SGD's stationary spread around θ ∈ M, to first order in the distance to M.

    Near M the residual r = f − y obeys r ← (I − 2ηK) r − 2ηKζ with K = JJᵀ and
    ζ ~ N(0, σ²I), so its stationary covariance is C = ησ²K(I − ηK)⁻¹ (needs ηλ_max < 1),
    and θ sits off M by δθ = Jᵀ K⁻¹ r: Cov(δθ) = ησ² Jᵀ K⁻¹ (I − ηK)⁻¹ J. The spread of
    z_ji = θ_j·x_i and of F ≈ F(θ) + ∇F·δθ follow. NaN where ηλ_max ≥ 1 (no stationary state).
    """
    from . import model

    m, d = theta.shape
    J = model.jacobian(np, act, theta[None], X, w)[0]  # (n, m·d)
    K = J @ J.T
    lam = np.linalg.eigvalsh(K)
    n = X.shape[0]
    if eta * lam[-1] >= 1:
        return StationarySpread(float("nan"), np.full((m, n), np.nan), float("nan"))
    A = np.linalg.solve(K, J)  # K⁻¹J
    cov = eta * sigma**2 * J.T @ np.linalg.solve(np.eye(n) - eta * K, A)  # Jᵀ(I − ηK)⁻¹K⁻¹J (K's commute)
    # z_ji = Σ_f θ_jf X_if: the rows of B map δθ (m·d, neuron-major) to δz (m, n)
    B = np.einsum("jk,if->jikf", np.eye(m), X).reshape(m * n, m * d)
    z_std = np.sqrt(np.maximum(np.einsum("ab,bc,ac->a", B, cov, B), 0.0)).reshape(m, n)
    gF = model.grad_sharpness(np, act, theta[None], X, w)[0].ravel()
    F_std = float(np.sqrt(max(gF @ cov @ gF, 0.0)))
    loss_mean = float(np.sum(eta * sigma**2 * lam / (1 - eta * lam)))
    return StationarySpread(loss_mean, z_std, F_std)
