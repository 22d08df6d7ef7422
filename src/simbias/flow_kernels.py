"""Compiled (numba) fast path of the flow's right-hand side and Woodbury solves.

At fig1a size (m·r = 30) one NumPy evaluation of the vector field costs tens of
microseconds of call overhead for a few hundred flops, and an implicit step needs
several; these loops do the same arithmetic without the overhead. They are the
second copy of :func:`simbias.flow_field.field` (for φ = z^p + νz, p odd),
:func:`simbias.model.riemannian_grad`, :func:`simbias.model.newton_retract` and
:class:`simbias.flow_field.ShiftedSolve`,
pinned to them by ``tests/test_flow_structured.py``.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _ipow(z, k):
    """z**k for a small integer k ≥ 0 by multiplication (numba's ** calls the generic pow)."""
    out = 1.0
    for _ in range(k):
        out *= z
    return out


SMALL = 4096  # from this many multiply-adds on, a product goes to BLAS instead of plain loops


@njit(cache=True)
def _activation_terms(A, B, w, s, p, nu):
    """Z = A Bᵀ (BLAS when large), D = w φ'(Z), C = 2 w² φ' φ'' ‖b‖², φ(Z) for φ = z^p + νz."""
    m, r = A.shape
    n = B.shape[0]
    Z = np.dot(A, B.T) if m * n * r >= SMALL else np.empty((0, 0))
    D = np.empty((m, n))
    C = np.empty((m, n))
    P = np.empty((m, n))
    for j in range(m):
        for i in range(n):
            if Z.size:
                z = Z[j, i]
            else:
                z = 0.0
                for a in range(r):
                    z += A[j, a] * B[i, a]
            zp2 = _ipow(z, p - 2)
            d1 = p * zp2 * z + nu
            d2 = p * (p - 1) * zp2
            D[j, i] = w[j] * d1
            C[j, i] = 2.0 * w[j] * w[j] * d1 * d2 * s[i]
            P[j, i] = zp2 * z * z + nu * z
    return D, C, P


@njit(cache=True)
def _multipliers(D, C, K):
    """G = (DᵀD) ∘ K and J∇F: h1_i = Σ_j D_ji (C K)_ji (plain loops, or BLAS when large)."""
    m, n = D.shape
    if m * n * n >= SMALL:
        return np.dot(D.T, D) * K, np.sum(D * np.dot(C, K), axis=0)
    G = np.empty((n, n))
    h1 = np.zeros(n)
    for i in range(n):
        for k in range(n):
            g = 0.0
            for j in range(m):
                g += D[j, i] * D[j, k]
            G[i, k] = g * K[i, k]
    for j in range(m):
        for i in range(n):
            ck = 0.0
            for q in range(n):
                ck += C[j, q] * K[q, i]
            h1[i] += D[j, i] * ck
    return G, h1


@njit(cache=True)
def _combine(D, C, lam, B):
    """v = (D ∘ λ − C) B (plain loops, or BLAS when large)."""
    m, n = D.shape
    r = B.shape[1]
    if m * n * r >= SMALL:
        return np.dot(D * lam - C, B)
    v = np.zeros((m, r))
    for j in range(m):
        for i in range(n):
            e = D[j, i] * lam[i] - C[j, i]
            for a in range(r):
                v[j, a] += e * B[i, a]
    return v


@njit(cache=True)
def velocity(A, B, K, s, y, w, p, nu, kappa):
    """v = −∇F + Jᵀ G⁻¹ (J∇F − κ (f − y)) in reduced coordinates, φ = z^p + νz."""
    D, C, P = _activation_terms(A, B, w, s, p, nu)
    G, h = _multipliers(D, C, K)
    m, n = D.shape
    for i in range(n):
        f = 0.0
        for j in range(m):
            f += w[j] * P[j, i]
        h[i] -= kappa * (f - y[i])
    return _combine(D, C, np.linalg.solve(G, h), B)


@njit(cache=True)
def grad_norm(A, B, K, s, w, p, nu):
    """‖∇_M F‖ = ‖(C − D ∘ λ) B‖ with λ = G⁻¹ J∇F (Lemma 1's projection), φ = z^p + νz."""
    D, C, _ = _activation_terms(A, B, w, s, p, nu)
    G, h1 = _multipliers(D, C, K)
    v = _combine(D, C, np.linalg.solve(G, h1), B)
    return np.sqrt(np.sum(v * v))


@njit(cache=True)
def newton_retract(A, B, K, y, w, p, nu, tol, max_iter):
    """Gauss–Newton onto M in reduced coordinates, φ = z^p + νz: A ← A − (D ∘ λ) B with
    G λ = f − y, G = (DᵀD) ∘ K, D = w φ'(Z), until max|f − y| ≤ tol (the arithmetic of
    :func:`simbias.model.newton_retract` for one replica). Returns (A, reached tol)."""
    m, n = A.shape[0], B.shape[0]
    A = A.copy()
    s = np.zeros(n)  # ‖b_i‖² enters only C, which the retraction does not use
    no_c = np.zeros((m, n))
    for it in range(max_iter + 1):
        D, _, P = _activation_terms(A, B, w, s, p, nu)
        r = np.empty(n)
        res = 0.0
        for i in range(n):
            f = 0.0
            for j in range(m):
                f += w[j] * P[j, i]
            r[i] = f - y[i]
            res = max(res, abs(r[i])) if np.isfinite(r[i]) else np.inf
        if res <= tol:
            return A, True
        if it == max_iter or not np.isfinite(res):
            return A, False
        G, _ = _multipliers(D, no_c, K)
        A -= _combine(D, no_c, np.linalg.solve(G, r), B)
    return A, False


def pack(B, K, s, y, w, nu, kappa) -> tuple[np.ndarray, np.ndarray]:
    """One replica's problem as two arrays (floats, sizes) for :func:`velocity_into` and
    :func:`grad_norm_flat`: numba checks the type of every argument of every call, and CVODE
    calls them about 10³ times per replica."""
    (n, r), m = B.shape, w.size
    floats = np.concatenate([B.ravel(), K.ravel(), s, y, w, [nu, kappa]]).astype(np.float64)
    return floats, np.array([m, r, n])


@njit(cache=True)
def _unpack(P, dims):
    m, r, n = dims[0], dims[1], dims[2]
    B = P[: n * r].reshape((n, r))
    K = P[n * r : n * r + n * n].reshape((n, n))
    i = n * r + n * n
    return m, r, B, K, P[i : i + n], P[i + n : i + 2 * n], P[i + 2 * n : i + 2 * n + m], P[-2], P[-1]


@njit(cache=True)
def velocity_into(v, out, P, dims, p):
    """out[:] = :func:`velocity` at v (m·r,) seen as (m, r), the problem from :func:`pack`:
    CVODE's right-hand side in one compiled call (the same arithmetic)."""
    m, r, B, K, s, y, w, nu, kappa = _unpack(P, dims)
    out[:] = velocity(v.reshape((m, r)), B, K, s, y, w, p, nu, kappa).ravel()


@njit(cache=True)
def grad_norm_flat(v, P, dims, p):
    """:func:`grad_norm` at v (m·r,) seen as (m, r), the problem from :func:`pack`."""
    m, r, B, K, s, _, w, nu, _ = _unpack(P, dims)
    return grad_norm(v.reshape((m, r)), B, K, s, w, p, nu)


@njit(cache=True)
def factor(H, U, Wt, c):
    """A0⁻¹ = (I − c H_j)⁻¹ per block, A0⁻¹U (m·r, n) and S = I − c (G⁻¹W) A0⁻¹U (n, n)."""
    m, r, n = U.shape
    A0inv = np.empty((m, r, r))
    A0invU = np.empty((m * r, n))
    eye = np.eye(r)
    for j in range(m):
        A0inv[j] = np.linalg.inv(eye - c * H[j])
        A0invU[j * r : (j + 1) * r] = A0inv[j] @ U[j]
    S = np.eye(n) - c * (Wt @ A0invU)
    return A0inv, A0invU, S


@njit(cache=True)
def solve(A0inv, A0invU, Wt, S, c, b):
    """(I − cJ)⁻¹ b = y0 + c A0⁻¹U S⁻¹ (G⁻¹W) y0, y0 = A0⁻¹ b (Woodbury)."""
    m, r, _ = A0inv.shape
    y0 = np.empty(m * r)
    for j in range(m):
        for a in range(r):
            acc = 0.0
            for q in range(r):
                acc += A0inv[j, a, q] * b[j * r + q]
            y0[j * r + a] = acc
    t = np.linalg.solve(S, Wt @ y0)
    return y0 + c * (A0invU @ t)
