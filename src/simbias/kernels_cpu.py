"""Compiled CPU fast path for label-noise SGD (numba): one segment of steps, all replicas.

This module holds the compiled copy of the SGD step's math; the reference is
:func:`simbias.sgd.advance` (any array module), and ``tests/test_fastpath.py``
pins this kernel to it bit for bit. The step (docs/math.md) is

    θ ← θ − 2η Jᵀ(f − y + ζ),   (Jᵀλ)_j = Σ_i λ_i w_j φ'(z_ji) x_i,   z_ji = θ_j · x_i,
    f_i = Σ_j w_j φ(z_ji),      φ(z) = z^p + νz,   φ'(z) = p z^(p−1) + ν   (p = 2k+1),

with the label noise ζ = σ z drawn inside the kernel (:func:`_normal_pair`: the
counter-based stream of ``docs/noise_stream.md``, the same bits as
:func:`simbias.noise.normals`; nothing drawn at σ = 0). A replica whose
loss L = Σ_i (f_i − y_i)² before a step is non-finite or above ``loss_bound``
is frozen from that step on and the step is written to ``diverged_step``.

Three kernels, chosen by :func:`choose`. Small models (fig1a, fig2): with enough
replicas, they are packed into the SIMD lanes of a core (:func:`_lane_block`),
blocks of lanes running in parallel over threads; with few, one replica at a
time (:func:`_replica_steps`). These two do the same IEEE operations in the
same order for each replica (no fast-math: no FMA contraction, no
reassociation), so a replica's trajectory is bit for bit the same whichever ran
and however many replicas ran beside it, and the same as the reference. Larger
models (m·d·n ≥ ``BLAS_MIN``, fig1b) take :func:`_replica_steps_blas`, whose two
matrix products go through BLAS (one BLAS thread: these products are too small to
share), whatever the replica count, unless ``exact`` asks for the loops. Each kernel runs replicas
independently, in parallel over replicas (``prange``) when there are several.

The thread count is numba's (``NUMBA_NUM_THREADS``, default: all cores), capped by
``OMP_NUM_THREADS`` when that is set (Snakemake sets it to a job's ``threads``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os

import numba
import numpy as np

from . import noise

log = logging.getLogger(__name__)

LANES = 8  # smallest block of replicas packed into SIMD lanes (8 float64 = one AVX-512 register)
# the lane kernel keeps (m, d) + (m, n) values per lane (fig1a: 60, fig2: 110): a guard
# so a block of 64 lanes stays within a core's L2; past it, one replica at a time
_LANE_MAX_MD_MN = 4096
# from this m·d·n on (fig1b: 4500), Z = Θ Xᵀ and Jᵀλ go through BLAS (np.dot):
# measured faster than the lanes from about m·d·n = 1000 on (fig1a: 90, fig2: 300)
BLAS_MIN = 1024


_U64 = np.uint64
_MASK32 = np.uint64(noise.MASK32)
_M0, _M1 = np.uint64(noise.PHILOX_M0), np.uint64(noise.PHILOX_M1)
_W0, _W1 = np.uint64(noise.PHILOX_W0), np.uint64(noise.PHILOX_W1)
_LOG_COEF = np.array(noise.LOG_COEF)
_SIN_COEF = np.array(noise.SIN_COEF)
_COS_COEF = np.array(noise.COS_COEF)


@numba.njit(inline="always")
def _horner(x, coef):
    acc = coef[coef.shape[0] - 1]
    for idx in range(coef.shape[0] - 2, -1, -1):
        acc = coef[idx] + x * acc
    return acc


@numba.njit(inline="always")
def _normal_pair(key0, key1, j, k, r):
    """Normals 2j and 2j+1 of step k of replica r (uint64 arguments): :func:`simbias.noise.normals`."""
    c0, c1, c2, c3 = j, k & _MASK32, k >> _U64(32), r
    k0, k1 = key0, key1
    for rnd in range(noise.PHILOX_ROUNDS):
        if rnd > 0:
            k0 = (k0 + _W0) & _MASK32
            k1 = (k1 + _W1) & _MASK32
        p0 = c0 * _M0
        p1 = c2 * _M1
        c0, c1, c2, c3 = (p1 >> _U64(32)) ^ c1 ^ k0, p1 & _MASK32, (p0 >> _U64(32)) ^ c3 ^ k1, p0 & _MASK32
    u = (np.float64(c0 >> _U64(5)) * 67108864.0 + np.float64(c1 >> _U64(6))) * noise.TWO_M53
    t = (np.float64(c2 >> _U64(5)) * 67108864.0 + np.float64(c3 >> _U64(6))) * noise.TWO_M53
    # log(1 − u): noise.log_unit
    mant, ex = math.frexp(1.0 - u)
    if mant < noise.SQRT_HALF:
        mant = mant * 2.0
        ex -= 1
    e = np.float64(ex)
    s = (mant - 1.0) / (mant + 1.0)
    lm = 2.0 * s * _horner(s * s, _LOG_COEF)
    rho = math.sqrt(-2.0 * (e * noise.LN2_HI + (e * noise.LN2_LO + lm)))
    # sin and cos of 2πt: noise.sincos_2pi
    v = t * 4.0
    q = np.floor(v + 0.5)
    x = (v - q) * noise.HALF_PI
    x2 = x * x
    sn = x * _horner(x2, _SIN_COEF)
    cs = _horner(x2, _COS_COEF)
    qm = np.int64(q) & 3
    if qm == 1:
        sn, cs = cs, -sn
    elif qm == 2:
        sn, cs = -sn, -cs
    elif qm == 3:
        sn, cs = -cs, sn
    return rho * cs, rho * sn


@numba.njit(inline="always")
def _label_noise(ze, sigma, key0, key1, k, r):
    """ζ_i = σ z_i (float64 product, rounded to ze's dtype) for step k of replica r, into ze (n,)."""
    n = ze.shape[0]
    for j in range((n + 1) // 2):
        z0, z1 = _normal_pair(key0, key1, _U64(j), k, r)
        ze[2 * j] = sigma * z0
        if 2 * j + 1 < n:
            ze[2 * j + 1] = sigma * z1


@numba.njit(cache=True)
def normals(key0, key1, replicas, k0, steps, n):
    """:func:`simbias.noise.normals` drawn by this module's inline generator, (steps, R, n) float64."""
    R = replicas.shape[0]
    out = np.empty((steps, R, n))
    ze = np.empty(n)
    for s in range(steps):
        for b in range(R):
            _label_noise(ze, 1.0, key0, key1, _U64(k0 + s), _U64(replicas[b]))
            out[s, b] = ze
    return out


@numba.njit(inline="always")
def _lane_label_noise(out, sigma, key0, key1, k, rl, c, f):
    """ζ of step k for every lane (replica ids ``rl``, (B,) uint64) into out (n, B).

    :func:`_normal_pair`'s operations elementwise over lanes (loops over lanes innermost,
    frexp from the bits), so LLVM vectorises them. Scratch: c (4, B) uint64, f (6, B) float64.
    """
    n, B = out.shape
    klo, khi = k & _MASK32, k >> _U64(32)
    c0, c1, c2, c3 = c[0], c[1], c[2], c[3]
    v, t, m, e, acc, rho = f[0], f[1], f[2], f[3], f[4], f[5]
    vbits = v.view(np.int64)
    mbits = m.view(np.int64)
    for j in range((n + 1) // 2):
        for b in range(B):
            c0[b] = _U64(j)
            c1[b] = klo
            c2[b] = khi
            c3[b] = rl[b]
        k0, k1 = key0, key1
        for rnd in range(noise.PHILOX_ROUNDS):
            if rnd > 0:
                k0 = (k0 + _W0) & _MASK32
                k1 = (k1 + _W1) & _MASK32
            for b in range(B):
                p0 = c0[b] * _M0
                p1 = c2[b] * _M1
                n0 = (p1 >> _U64(32)) ^ c1[b] ^ k0
                n2 = (p0 >> _U64(32)) ^ c3[b] ^ k1
                c0[b] = n0
                c1[b] = p1 & _MASK32
                c2[b] = n2
                c3[b] = p0 & _MASK32
        for b in range(B):
            u = (np.float64(c0[b] >> _U64(5)) * 67108864.0 + np.float64(c1[b] >> _U64(6))) * noise.TWO_M53
            v[b] = 1.0 - u
            t[b] = (np.float64(c2[b] >> _U64(5)) * 67108864.0 + np.float64(c3[b] >> _U64(6))) * noise.TWO_M53
        for b in range(B):  # frexp of the normal v in (0, 1], from its bits
            bits = vbits[b]
            ex = ((bits >> 52) & 0x7FF) - 1022
            mbits[b] = (bits & ~(0x7FF << 52)) | (1022 << 52)
            low = m[b] < noise.SQRT_HALF
            m[b] = m[b] * 2.0 if low else m[b]
            e[b] = np.float64(ex - 1 if low else ex)
        for b in range(B):
            sb = (m[b] - 1.0) / (m[b] + 1.0)
            m[b] = sb  # m now holds s
            acc[b] = _LOG_COEF[_LOG_COEF.shape[0] - 1]
        for idx in range(_LOG_COEF.shape[0] - 2, -1, -1):
            cf = _LOG_COEF[idx]
            for b in range(B):
                acc[b] = cf + (m[b] * m[b]) * acc[b]
        for b in range(B):
            lm = 2.0 * m[b] * acc[b]
            rho[b] = math.sqrt(-2.0 * (e[b] * noise.LN2_HI + (e[b] * noise.LN2_LO + lm)))
        # sin and cos of 2πt: q in e, x in m, the sine's Horner sum in acc, the cosine's in v
        for b in range(B):
            w4 = t[b] * 4.0
            q = np.floor(w4 + 0.5)
            e[b] = q
            m[b] = (w4 - q) * noise.HALF_PI
            acc[b] = _SIN_COEF[_SIN_COEF.shape[0] - 1]
            v[b] = _COS_COEF[_COS_COEF.shape[0] - 1]
        for idx in range(_SIN_COEF.shape[0] - 2, -1, -1):
            cf = _SIN_COEF[idx]
            for b in range(B):
                acc[b] = cf + (m[b] * m[b]) * acc[b]
        for idx in range(_COS_COEF.shape[0] - 2, -1, -1):
            cf = _COS_COEF[idx]
            for b in range(B):
                v[b] = cf + (m[b] * m[b]) * v[b]
        oe = out[2 * j]
        for b in range(B):
            sn = m[b] * acc[b]
            cs = v[b]
            qm = np.int64(e[b]) & 3
            s_ = sn if qm == 0 else (cs if qm == 1 else (-sn if qm == 2 else -cs))
            c_ = cs if qm == 0 else (-sn if qm == 1 else (-cs if qm == 2 else sn))
            oe[b] = sigma * (rho[b] * c_)
            if 2 * j + 1 < n:
                out[2 * j + 1, b] = sigma * (rho[b] * s_)


@numba.njit(inline="always")
def _phi_terms(z, half, pf, nu):
    """φ(z) and φ'(z) for φ = z^p + νz, p = 2·half + 1, as z·z^(p-1) + νz and p·z^(p-1) + ν."""
    z2 = z * z
    zq = z2
    for _ in range(half - 1):
        zq *= z2  # z^(p-1)
    return z * zq + nu * z, pf * zq + nu


@numba.njit(inline="always")
def _residuals(f, y, ze, noisy, lam):
    """λ = f − y + ζ (into lam; ζ only when ``noisy``); returns L = Σ (f − y)²."""
    loss = 0.0
    for i in range(f.shape[0]):
        res = f[i] - y[i]
        loss += res * res
        lam[i] = res + ze[i] if noisy else res
    return loss


@numba.njit(cache=True, nogil=True)
def _replica_steps(
    th,
    X,
    XT,
    y,
    w,
    two_eta,
    sigma,
    key0,
    key1,
    r,
    k0,
    steps,
    loss_bound,
    half,
    pf,
    nu,
    zero,
    Z,
    D,
    f,
    lam,
    g,
    ze,
):
    """Run ``steps`` steps (k0, k0+1, ...) on replica r's θ (m, d), in place, its noise drawn inline.

    Returns the step (within the segment) at which the replica was found
    diverged, or -1. Scratch: Z, D (m, n), f, lam, ze (n,), g (d,).
    """
    m, d = th.shape
    n = X.shape[0]
    noisy = sigma != 0.0
    dot = d <= 8  # short sums: reductions; long ones: axpy loops (same order of operations)
    for s in range(steps):
        # z_ji = θ_j · x_i,  f_i = Σ_j w_j φ(z_ji),  D_ji = w_j φ'(z_ji)
        for i in range(n):
            f[i] = 0.0
        for j in range(m):
            if dot:
                for i in range(n):
                    acc = zero
                    for k in range(d):
                        acc += th[j, k] * X[i, k]
                    Z[j, i] = acc
            else:
                for i in range(n):
                    Z[j, i] = 0.0
                for k in range(d):
                    t = th[j, k]
                    for i in range(n):
                        Z[j, i] += t * XT[k, i]
            wj = w[j]
            for i in range(n):
                phi, dphi = _phi_terms(Z[j, i], half, pf, nu)
                f[i] += wj * phi
                D[j, i] = wj * dphi
        # λ = f − y + ζ; stop before the step if L = Σ (f − y)² is not ≤ the bound (NaN too)
        if noisy:
            _label_noise(ze, sigma, key0, key1, _U64(k0 + s), r)
        loss = _residuals(f, y, ze, noisy, lam)
        if not (loss <= loss_bound):
            return s
        # θ_j ← θ_j − 2η Σ_i (D_ji λ_i) x_i
        for j in range(m):
            if dot:
                for k in range(d):
                    acc = zero
                    for i in range(n):
                        acc += (D[j, i] * lam[i]) * X[i, k]
                    th[j, k] -= two_eta * acc
            else:
                for k in range(d):
                    g[k] = 0.0
                for i in range(n):
                    c = D[j, i] * lam[i]
                    for k in range(d):
                        g[k] += c * X[i, k]
                for k in range(d):
                    th[j, k] -= two_eta * g[k]
    return -1


@numba.njit(cache=True, nogil=True)
def _replica_steps_blas(
    th, X, XT, y, w, two_eta, sigma, key0, key1, r, k0, steps, loss_bound, half, pf, nu, D, f, lam, ze
):
    """:func:`_replica_steps` for large models: Z = Θ Xᵀ and g = (D ∘ λ) X as BLAS matrix products."""
    m, d = th.shape
    n = X.shape[0]
    noisy = sigma != 0.0
    for s in range(steps):
        Z = np.dot(th, XT)
        for i in range(n):
            f[i] = 0.0
        for j in range(m):
            wj = w[j]
            for i in range(n):
                phi, dphi = _phi_terms(Z[j, i], half, pf, nu)
                f[i] += wj * phi
                D[j, i] = wj * dphi
        if noisy:
            _label_noise(ze, sigma, key0, key1, _U64(k0 + s), r)
        loss = _residuals(f, y, ze, noisy, lam)
        if not (loss <= loss_bound):
            return s
        for j in range(m):
            for i in range(n):
                D[j, i] *= lam[i]
        g = np.dot(D, X)
        for j in range(m):
            for k in range(d):
                th[j, k] -= two_eta * g[j, k]
    return -1


# fmt: off
@numba.njit(cache=True, nogil=True)
def _lane_block(
    theta, X, y, w, two_eta, sigma, key0, key1, rids, steps,
    alive, loss_bound, half, pf, nu, k0, diverged_step, r0, B,
):
    # fmt: on
    """Replicas r0 .. r0+B-1 (fewer at the end), one per SIMD lane.

    The same operations as :func:`_replica_steps` with the dot-product order,
    elementwise over the lane axis (last, unit stride, so LLVM vectorises it).
    A lane whose replica is frozen (or padding) computes on θ = 0 and is never
    written back.
    """
    R, m, d = theta.shape
    n = X.shape[0]
    nb = min(B, R - r0)
    dt = theta.dtype
    noisy = sigma != 0.0
    th = np.zeros((m, d, B), dtype=dt)
    D = np.empty((m, n, B), dtype=dt)
    f = np.empty((n, B), dtype=dt)
    lam = np.empty((n, B), dtype=dt)
    acc = np.empty(B, dtype=dt)
    zq = np.empty(B, dtype=dt)
    zl = np.zeros((n, B), dtype=dt)
    rl = np.zeros(B, dtype=np.uint64)
    for b in range(nb):
        rl[b] = rids[r0 + b]
    cbuf = np.empty((4, B), dtype=np.uint64)
    fbuf = np.empty((6, B), dtype=np.float64)
    loss = np.empty(B, dtype=np.float64)
    live = np.zeros(B, dtype=np.bool_)
    for b in range(nb):
        if alive[r0 + b]:
            live[b] = True
            for j in range(m):
                for k in range(d):
                    th[j, k, b] = theta[r0 + b, j, k]
    for s in range(steps):
        f[:, :] = 0.0
        for j in range(m):
            wj = w[j]
            for i in range(n):
                acc[:] = 0.0
                for k in range(d):
                    xik = X[i, k]
                    t = th[j, k]
                    for b in range(B):
                        acc[b] += t[b] * xik
                fi = f[i]
                Dji = D[j, i]
                for b in range(B):
                    z = acc[b]
                    zq[b] = z * z
                for _ in range(half - 1):
                    for b in range(B):
                        z = acc[b]
                        zq[b] *= z * z
                for b in range(B):
                    z = acc[b]
                    fi[b] += wj * (z * zq[b] + nu * z)
                    Dji[b] = wj * (pf * zq[b] + nu)
        loss[:] = 0.0
        for i in range(n):
            yi = y[i]
            fi = f[i]
            li = lam[i]
            for b in range(B):
                res = fi[b] - yi
                loss[b] += res * res
                li[b] = res
        if noisy:  # every lane draws (padding and frozen lanes too; never used)
            _lane_label_noise(zl, sigma, key0, key1, _U64(k0 + s), rl, cbuf, fbuf)
            for i in range(n):
                li = lam[i]
                zi = zl[i]
                for b in range(B):
                    li[b] += zi[b]
        for b in range(nb):
            if live[b] and not (loss[b] <= loss_bound):
                live[b] = False
                alive[r0 + b] = False
                diverged_step[r0 + b] = k0 + s
                for j in range(m):
                    for k in range(d):
                        theta[r0 + b, j, k] = th[j, k, b]  # the state before the failing step
                        th[j, k, b] = 0.0
                for i in range(n):
                    lam[i, b] = 0.0
        for j in range(m):
            for k in range(d):
                acc[:] = 0.0
                for i in range(n):
                    xik = X[i, k]
                    Dji = D[j, i]
                    li = lam[i]
                    for b in range(B):
                        acc[b] += (Dji[b] * li[b]) * xik
                t = th[j, k]
                for b in range(B):
                    t[b] -= two_eta * acc[b]
    for b in range(nb):
        if live[b]:
            for j in range(m):
                for k in range(d):
                    theta[r0 + b, j, k] = th[j, k, b]


LOOPS, BLAS, LANE_BLOCKS = 0, 1, 2  # kernel modes of _segment


# fmt: off
@numba.njit(cache=True, nogil=True, parallel=True)
def _segment(
    theta, X, y, w, two_eta, sigma, key0, key1, rids, steps,
    alive, loss_bound, half, pf, nu, k0, diverged_step, mode, B,
):
    # fmt: on
    """All replicas of one segment, in parallel over replicas (or blocks of B lanes).

    mode LOOPS: :func:`_replica_steps`; BLAS: :func:`_replica_steps_blas`;
    LANE_BLOCKS: :func:`_lane_block` on blocks of B replicas. Replica b's noise is
    stream ``rids[b]``.
    """
    R, m, d = theta.shape
    n = X.shape[0]
    if mode == LANE_BLOCKS:
        nblocks = (R + B - 1) // B
        for blk in numba.prange(nblocks):
            _lane_block(
                theta, X, y, w, two_eta, sigma, key0, key1, rids, steps, alive, loss_bound,
                half, pf, nu, k0, diverged_step, blk * B, B,
            )  # fmt: skip
        return
    XT = np.ascontiguousarray(X.T)
    zero = pf - pf
    for r in numba.prange(R):
        if not alive[r]:
            continue
        D = np.empty((m, n), dtype=theta.dtype)
        f = np.empty(n, dtype=theta.dtype)
        lam = np.empty(n, dtype=theta.dtype)
        ze = np.zeros(n, dtype=theta.dtype)
        rid = _U64(rids[r])
        if mode == BLAS:
            s = _replica_steps_blas(
                theta[r], X, XT, y, w, two_eta, sigma, key0, key1, rid, k0, steps, loss_bound,
                half, pf, nu, D, f, lam, ze,
            )  # fmt: skip
        else:
            Z = np.empty((m, n), dtype=theta.dtype)
            g = np.empty(d, dtype=theta.dtype)
            s = _replica_steps(
                theta[r], X, XT, y, w, two_eta, sigma, key0, key1, rid, k0, steps, loss_bound,
                half, pf, nu, zero, Z, D, f, lam, g, ze,
            )  # fmt: skip
        if s >= 0:
            alive[r] = False
            diverged_step[r] = k0 + s


_CONTROLLER = None


def blas_threads(limit: int):
    """Context manager capping the BLAS libraries' threads (threadpoolctl; no-op without it)."""
    global _CONTROLLER
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return contextlib.nullcontext()
    if _CONTROLLER is None:
        import scipy.linalg.cython_blas  # noqa: F401  (numba's np.dot calls this BLAS: load it first)

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=limit, user_api="blas")


def threads() -> int:
    """Threads the kernel uses: numba's count, capped by OMP_NUM_THREADS when set."""
    nt = numba.config.NUMBA_NUM_THREADS
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        nt = min(nt, int(omp))
    return max(1, nt)


def supports(act) -> bool:
    """Whether the kernel covers this activation: the OddPower family φ = z^p + νz, p odd ≥ 3."""
    from .activations import OddPower

    return isinstance(act, OddPower) and act.p >= 3 and act.p % 2 == 1


def choose(R: int, m: int, d: int, n: int, nthreads: int, exact: bool = False) -> tuple[str, int]:
    """Which kernel runs: ('blas', 0), ('lanes', B) or ('loops', 0).

    Large models (m·d·n ≥ ``BLAS_MIN``) take the BLAS kernel, whatever R, unless
    ``exact`` (then the loops, whose sums run in the reference's order); otherwise lanes
    pay once every thread gets a block of at least ``LANES`` replicas (blocks grow to
    64 lanes with R), and below that one replica at a time. For a given model size every
    choice but BLAS gives the same bits per replica as :func:`simbias.sgd.advance`.
    """
    if m * d * n >= BLAS_MIN:
        return ("loops", 0) if exact else ("blas", 0)
    if R >= LANES * nthreads and m * (d + n) <= _LANE_MAX_MD_MN:
        per_thread = -(-R // nthreads)
        return "lanes", int(min(64, max(LANES, -(-per_thread // LANES) * LANES)))
    return "loops", 0


# fmt: off
def advance(xp, act, theta, X, y, w, eta: float, sigma: float, seed: int, replicas, k0: int, steps: int,
            alive, loss_bound: float, diverged_step, exact: bool = False):
    # fmt: on
    """Drop-in for :func:`simbias.sgd.advance` on NumPy arrays and OddPower activations.

    Runs ``steps`` steps θ ← θ − 2η Jᵀ(f − y + ζ) from step ``k0`` (float32 or float64:
    the dtype of ``theta``), the label noise ζ = σ z drawn inline from the stream of
    ``docs/noise_stream.md`` (nothing drawn at σ = 0), freezing replicas as the
    reference does. ``exact`` keeps large models off BLAS (bit-identical to the
    reference). Returns new (θ, alive); ``diverged_step`` (host int array) is updated in place.
    """
    dt = np.dtype(theta.dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"the CPU kernel needs float32 or float64, got {dt}")
    th = np.array(theta, dtype=dt, order="C", copy=True)
    al = np.array(alive, dtype=np.bool_, copy=True)
    Xc, yc, wc = (np.ascontiguousarray(a, dtype=dt) for a in (X, y, w))
    ds = np.ascontiguousarray(diverged_step, dtype=np.int64)
    rids = np.ascontiguousarray(replicas, dtype=np.int64)
    key0, key1 = noise.seed_key(seed)
    R, m, d = th.shape
    cast = dt.type
    args = (th, Xc, yc, wc, cast(2.0 * eta), float(sigma), _U64(key0), _U64(key1), rids, int(steps), al)
    args += (float(loss_bound), (act.p - 1) // 2, cast(act.p), cast(act.nu), int(k0), ds)
    nt = threads()
    kind, B = choose(R, m, d, Xc.shape[0], nt, exact)
    mode = {"loops": LOOPS, "blas": BLAS, "lanes": LANE_BLOCKS}[kind]
    work = -(-R // B) if kind == "lanes" else R  # parallel items
    use = max(1, min(nt, work))
    prev = numba.get_num_threads()
    numba.set_num_threads(use)
    try:
        if mode == BLAS:  # tiny matrix products: one BLAS thread, or idle BLAS threads spin
            with blas_threads(1):
                _segment(*args, mode, B)
        else:
            _segment(*args, mode, B)
    finally:
        numba.set_num_threads(prev)
    if ds is not diverged_step:
        diverged_step[...] = ds
    newly = np.flatnonzero(np.asarray(alive) & ~al)
    for st in np.unique(ds[newly]):
        log.warning("%d replica(s) diverged at step %d", int((ds[newly] == st).sum()), int(st))
    return th, al
