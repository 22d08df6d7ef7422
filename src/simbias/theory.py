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


def theorem3_time(F0: float, c: Constants, eps: float) -> float:
    """Theorem 3 (C.1): ε-stationary for all τ ≥ F(θ0)/(μβ²) + log(max(β²/(ϱ1²ϱ2²ε²), 1))/(ϱ1ϱ2μ).

    NaN when a constant is not positive (see :func:`theorem3_applicability` for the reason).
    """
    if min(c.mu, c.rho1, c.rho2, c.beta) <= 0:
        return float("nan")
    return float(
        F0 / (c.mu * c.beta**2)
        + np.log(max(c.beta**2 / (c.rho1**2 * c.rho2**2 * eps**2), 1.0)) / (c.rho1 * c.rho2 * c.mu)
    )


def lemma6_bound(grad_norm, c: Constants):
    """Lemma 6 / Theorem 3 (C.2): ‖∇_M F‖ ≤ δ ⇒ max|z − z*| ≤ δ / (√μ ϱ1 ϱ2)."""
    if min(c.mu, c.rho1, c.rho2) <= 0:
        return np.full(np.shape(grad_norm), np.nan)
    return np.asarray(grad_norm) / (np.sqrt(c.mu) * c.rho1 * c.rho2)
