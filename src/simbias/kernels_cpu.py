"""Compiled CPU fast path for label-noise SGD (numba): one segment of steps, all replicas.

This module holds the compiled copy of the SGD step's math; the reference is
:func:`simbias.sgd.advance` (any array module), and ``tests/test_fastpath.py``
pins this kernel to it bit for bit. The step (docs/math.md) is

    θ ← θ − 2η Jᵀ(f − y + ζ),   (Jᵀλ)_j = Σ_i λ_i w_j φ'(z_ji) x_i,   z_ji = θ_j · x_i,
    f_i = Σ_j w_j φ(z_ji),      φ(z) = z^p + νz,   φ'(z) = p z^(p−1) + ν   (p = 2k+1),

with the label noise ζ = σ z drawn inside the kernel (:func:`_lane_label_noise`: the
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
matrix products go through BLAS (on the threads numba leaves idle: all of them for one
replica, one per replica thread otherwise), whatever the replica count, unless
``exact`` asks for the loops. Each kernel runs replicas independently, in parallel
over replicas (``prange``) when there are several.

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
# the loop kernel is compiled for d and n as constants up to this size (short loops unroll;
# one compiled version per (d, n), cached on disk), and reads them from the arrays above it
SPECIALISE_MAX = 8
# the loop kernel forms z_ji = θ_j · x_i as a reduction over k up to this d, and as axpy
# loops over i above it (the same order of operations, so the same bits)
DOT_MAX_D = 8


_U64 = np.uint64
_MASK32 = np.uint64(noise.MASK32)
_M0, _M1 = np.uint64(noise.PHILOX_M0), np.uint64(noise.PHILOX_M1)


def _straight_line(name: str, args: str, body: list[str], result: str):
    """An inline numba function from straight-line statements (loops written out, so that a
    loop over lanes that calls it is innermost and vectorises)."""
    src = f"def {name}({args}):\n" + "".join(f"    {line}\n" for line in body) + f"    return {result}\n"
    ns = {"_MASK32": _MASK32, "_M0": _M0, "_M1": _M1, "_U64": _U64}
    exec(compile(src, f"<simbias.kernels_cpu.{name}>", "exec"), ns)
    return numba.njit(inline="always")(ns[name])


def _horner_src(coef) -> str:
    """c0 + x(c1 + x(c2 + ...)): :func:`simbias.noise._horner`'s order of operations."""
    expr = repr(float(coef[-1]))
    for c in reversed(coef[:-1]):
        expr = f"({float(c)!r} + x * {expr})"
    return expr


_log_poly = _straight_line("_log_poly", "x", [], _horner_src(noise.LOG_COEF))
_sin_poly = _straight_line("_sin_poly", "x", [], _horner_src(noise.SIN_COEF))
_cos_poly = _straight_line("_cos_poly", "x", [], _horner_src(noise.COS_COEF))
# Philox4x32 rounds (noise.philox4x32), the key bumped by the Weyl constants between rounds
_W0_INT, _W1_INT = int(noise.PHILOX_W0), int(noise.PHILOX_W1)
_philox = _straight_line(
    "_philox",
    "c0, c1, c2, c3, k0, k1",
    [
        line
        for rnd in range(noise.PHILOX_ROUNDS)
        for line in (
            []
            if rnd == 0
            else [f"k0 = (k0 + _U64({_W0_INT})) & _MASK32", f"k1 = (k1 + _U64({_W1_INT})) & _MASK32"]
        )
        + [
            "p0 = (c0 & _MASK32) * _M0",
            "p1 = (c2 & _MASK32) * _M1",
            "c0, c1, c2, c3 = (p1 >> _U64(32)) ^ c1 ^ k0, p1 & _MASK32, (p0 >> _U64(32)) ^ c3 ^ k1, p0 & _MASK32",
        ]
    ],
    "c0, c1, c2, c3",
)


@numba.njit(cache=True, error_model="numpy")
def normals(key0, key1, replicas, k0, steps, n):
    """:func:`simbias.noise.normals` drawn by this module's inline generator, (steps, R, n) float64."""
    R = replicas.shape[0]
    out = np.empty((steps, R, n))
    zc, kl, rl, sg = _chunk_scratch(n, np.float64)
    for b in range(R):
        for s0 in range(0, steps, CHUNK):
            cnt = min(CHUNK, steps - s0)
            _chunk_noise(zc, 1.0, key0, key1, _U64(k0 + s0), _U64(replicas[b]), kl, rl, sg, cnt)
            for s in range(s0, min(steps, s0 + CHUNK)):
                out[s, b] = zc[:, s - s0]
    return out


_MAGIC = np.uint64(0x4330000000000000)  # the bits of 2⁵²: k | _MAGIC, read as float64, is 2⁵² + k
_TWO52 = 4503599627370496.0
_MANT = np.uint64((1 << 52) - 1)
_HALF_EXP = np.uint64(1022 << 52)  # exponent bits of [0.5, 1)


@numba.njit(inline="always")
def _exact_float(k):
    """float64(k) for a uint64 k < 2⁵², by bits (so a loop of it vectorises without AVX-512)."""
    return _U64(k | _MAGIC).view(np.float64) - _TWO52


@numba.njit(inline="always")
def _normal_pair(key0, key1, j, klo, khi, r):
    """Normals 2j and 2j+1 of the step with counter words (klo, khi) of replica r.

    :func:`simbias.noise.normals`' operations one for one (docs/noise_stream.md:
    Philox4x32-10, 53-bit uniforms, log(1 − u) and sin/cos(2πt) from + − × ÷), all
    uint64 arguments < 2³². Branch-free (frexp and the quadrant by bits and selects),
    so that a loop of it over lanes vectorises.
    """
    c0, c1, c2, c3 = _philox(j, klo, khi, r, key0, key1)
    u = (_exact_float(c0 >> _U64(5)) * 67108864.0 + _exact_float(c1 >> _U64(6))) * noise.TWO_M53
    t = (_exact_float(c2 >> _U64(5)) * 67108864.0 + _exact_float(c3 >> _U64(6))) * noise.TWO_M53
    # log(1 − u) (noise.log_unit): v = 1 − u in (0, 1] is m·2^e, m in [0.5, 1), by bits
    vb = np.float64(1.0 - u).view(np.uint64)
    m = _U64((vb & _MANT) | _HALF_EXP).view(np.float64)
    e = _exact_float(vb >> _U64(52)) - 1022.0
    low = m < noise.SQRT_HALF
    m = m * 2.0 if low else m
    e = e - 1.0 if low else e
    sv = (m - 1.0) / (m + 1.0)
    lm = 2.0 * sv * _log_poly(sv * sv)
    rho = math.sqrt(-2.0 * (e * noise.LN2_HI + (e * noise.LN2_LO + lm)))
    # sin and cos of 2πt (noise.sincos_2pi); the quadrant q in {0, .., 4} (4 is 0)
    w4 = t * 4.0
    q = np.floor(w4 + 0.5)
    x = (w4 - q) * noise.HALF_PI
    x2 = x * x
    sn = x * _sin_poly(x2)
    cs = _cos_poly(x2)
    s_ = cs if q == 1.0 else (-sn if q == 2.0 else (-cs if q == 3.0 else sn))
    c_ = -sn if q == 1.0 else (-cs if q == 2.0 else (sn if q == 3.0 else cs))
    return rho * c_, rho * s_


@numba.njit(inline="always")
def _lane_label_noise(out, sg, key0, key1, kl, rl, B):
    """ζ for B (step, replica) pairs at once: lane b is step ``kl[b]`` of replica ``rl[b]``
    ((≥ B,) uint64 each), ζ = ``sg[b]`` z (float64 product, rounded to out's dtype) into
    ``out[:, :B]`` (out is (n, ≥ B)).

    A loop of :func:`_normal_pair` over lanes, which LLVM vectorises. The lanes are
    replicas at one step (:func:`_lane_block`) or consecutive steps of one replica
    (:func:`_chunk_noise`).
    """
    n = out.shape[0]
    for j in range(n // 2):
        oe, oo = out[2 * j], out[2 * j + 1]
        for b in range(B):
            k = kl[b]
            z0, z1 = _normal_pair(key0, key1, _U64(j), k & _MASK32, k >> _U64(32), rl[b])
            oe[b] = sg[b] * z0
            oo[b] = sg[b] * z1
    if n % 2 == 1:
        oe = out[n - 1]
        for b in range(B):
            k = kl[b]
            z0, _ = _normal_pair(key0, key1, _U64(n // 2), k & _MASK32, k >> _U64(32), rl[b])
            oe[b] = sg[b] * z0


CHUNK = 32  # steps of one replica whose noise :func:`_chunk_noise` draws at once (SIMD lanes)


@numba.njit(inline="always")
def _chunk_noise(zc, sigma, key0, key1, k, r, kl, rl, sg, cnt):
    """ζ of steps k .. k+cnt−1 of replica r into ``zc[:, :cnt]`` (zc is (n, C), cnt ≤ C):
    :func:`_lane_label_noise` with the steps in the lanes. Scratch: kl, rl (C,) uint64,
    sg (C,) float64. Inlined: as a call it measured about 10 % slower at fig1b with one
    replica (CPU time), the scratch arrays no longer known not to overlap."""
    for b in range(cnt):
        kl[b] = k + _U64(b)
        rl[b] = r
        sg[b] = sigma
    _lane_label_noise(zc, sg, key0, key1, kl, rl, cnt)


@numba.njit(inline="always")
def _chunk_scratch(n, dt):
    """Scratch of :func:`_next_noise`: ζ of CHUNK steps (n, CHUNK) and the lane buffers."""
    zc = np.empty((n, CHUNK), dtype=dt)
    return zc, np.empty(CHUNK, dtype=np.uint64), np.empty(CHUNK, dtype=np.uint64), np.empty(CHUNK)


@numba.njit(inline="always")
def _next_noise(ze, zc, s, steps, sigma, key0, key1, k0, r, kl, rl, sg):
    """ζ of step k0+s of replica r into ze (n,), drawn CHUNK steps at a time into zc
    (fewer at the end of a segment of ``steps`` steps: only the steps that run are drawn)."""
    c = s % CHUNK
    if c == 0:
        _chunk_noise(zc, sigma, key0, key1, _U64(k0 + s), r, kl, rl, sg, min(CHUNK, steps - s))
    for i in range(ze.shape[0]):
        ze[i] = zc[i, c]


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


@numba.njit(cache=True, nogil=True, error_model="numpy")
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
    dd,
    nn,
):
    """Run ``steps`` steps (k0, k0+1, ...) on replica r's θ (m, d), in place, its noise drawn inline.

    Returns the step (within the segment) at which the replica was found
    diverged, or -1. Scratch: Z, D (m, n), f, lam, ze (n,), g (d,).
    """
    m = th.shape[0]
    d = len(dd) if len(dd) > 0 else th.shape[1]
    n = len(nn) if len(nn) > 0 else X.shape[0]
    noisy = sigma != 0.0
    dot = d <= DOT_MAX_D
    zc, kl, rl, sg = _chunk_scratch(n, ze.dtype)
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
            _next_noise(ze, zc, s, steps, sigma, key0, key1, k0, r, kl, rl, sg)
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


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _replica_steps_blas(
    th, X, XT, y, w, two_eta, sigma, key0, key1, r, k0, steps, loss_bound, half, pf, nu, D, f, lam, ze
):
    """:func:`_replica_steps` for large models: Z = Θ Xᵀ and g = (D ∘ λ) X as BLAS matrix products."""
    m, d = th.shape
    n = X.shape[0]
    noisy = sigma != 0.0
    zc, kl, rl, sg = _chunk_scratch(n, ze.dtype)
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
            _next_noise(ze, zc, s, steps, sigma, key0, key1, k0, r, kl, rl, sg)
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
@numba.njit(cache=True, nogil=True, error_model="numpy")
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
    th = np.zeros((m, d, B), dtype=dt)
    D = np.empty((m, n, B), dtype=dt)
    f = np.empty((n, B), dtype=dt)
    lam = np.empty((n, B), dtype=dt)
    acc = np.empty(B, dtype=dt)
    zq = np.empty(B, dtype=dt)
    zl = np.zeros((n, B), dtype=dt)
    rl = np.zeros(B, dtype=np.uint64)
    kl = np.empty(B, dtype=np.uint64)
    te = np.zeros(B, dtype=dt)  # 2η per lane
    sg = np.zeros(B, dtype=np.float64)  # σ per lane
    for b in range(nb):
        rl[b] = rids[r0 + b]
        te[b] = two_eta[r0 + b]
        sg[b] = sigma[r0 + b]
    noisy = False
    for b in range(nb):
        noisy = noisy or (sg[b] != 0.0 and alive[r0 + b])
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
            kl[:] = _U64(k0 + s)
            _lane_label_noise(zl, sg, key0, key1, kl, rl, B)
            for i in range(n):
                li = lam[i]
                zi = zl[i]
                for b in range(B):
                    li[b] = li[b] + zi[b] if sg[b] != 0.0 else li[b]
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
                    t[b] -= te[b] * acc[b]
    for b in range(nb):
        if live[b]:
            for j in range(m):
                for k in range(d):
                    theta[r0 + b, j, k] = th[j, k, b]


@numba.njit(inline="always")
def _replica_scratch(m, n, dt):
    """One replica's scratch for the loop and BLAS kernels: D (m, n), f, λ, ζ (n,)."""
    return np.empty((m, n), dtype=dt), np.empty(n, dtype=dt), np.empty(n, dtype=dt), np.zeros(n, dtype=dt)


LOOPS, BLAS, LANE_BLOCKS = 0, 1, 2  # kernel modes (LOOPS: _loop_segment, else _segment)


# fmt: off
@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _segment(
    theta, X, y, w, two_eta, sigma, key0, key1, rids, steps,
    alive, loss_bound, half, pf, nu, k0, diverged_step, mode, B,
):
    # fmt: on
    """All replicas of one segment, in parallel over replicas (or blocks of B lanes).

    mode BLAS: :func:`_replica_steps_blas`; LANE_BLOCKS: :func:`_lane_block` on blocks
    of B replicas (mode LOOPS is :func:`_loop_segment`). Replica b's noise is
    stream ``rids[b]``; its 2η and σ are ``two_eta[b]`` and ``sigma[b]`` ((R,) arrays).
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
    for r in numba.prange(R):
        if not alive[r]:
            continue
        D, f, lam, ze = _replica_scratch(m, n, theta.dtype)
        s = _replica_steps_blas(
            theta[r], X, XT, y, w, two_eta[r], sigma[r], key0, key1, _U64(rids[r]), k0, steps,
            loss_bound, half, pf, nu, D, f, lam, ze,
        )  # fmt: skip
        if s >= 0:
            alive[r] = False
            diverged_step[r] = k0 + s


# fmt: off
@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _loop_segment(
    theta, X, y, w, two_eta, sigma, key0, key1, rids, steps,
    alive, loss_bound, half, pf, nu, k0, diverged_step, dd, nn,
):
    # fmt: on
    """:func:`_segment`'s mode LOOPS: :func:`_replica_steps` on each replica, in parallel.

    ``dd`` and ``nn`` are d and n zeros (tuples, whose lengths are compile-time constants,
    so the short loops over d and n unroll: one compiled version per (d, n)) or ``()``
    (read d and n from the arrays).
    """
    R, m, d = theta.shape
    n = X.shape[0]
    XT = np.ascontiguousarray(X.T)
    for r in numba.prange(R):
        if not alive[r]:
            continue
        D, f, lam, ze = _replica_scratch(m, n, theta.dtype)
        Z = np.empty((m, n), dtype=theta.dtype)
        g = np.empty(d, dtype=theta.dtype)
        s = _replica_steps(
            theta[r], X, XT, y, w, two_eta[r], sigma[r], key0, key1, _U64(rids[r]), k0, steps,
            loss_bound, half, pf, nu, pf - pf, Z, D, f, lam, g, ze, dd, nn,
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
def advance(xp, act, theta, X, y, w, eta, sigma, seed: int, replicas, k0: int, steps: int,
            alive, loss_bound: float, diverged_step, exact: bool = False):
    # fmt: on
    """Drop-in for :func:`simbias.sgd.advance` on NumPy arrays and OddPower activations.

    Runs ``steps`` steps θ ← θ − 2η Jᵀ(f − y + ζ) from step ``k0`` (float32 or float64:
    the dtype of ``theta``), the label noise ζ = σ z drawn inline from the stream of
    ``docs/noise_stream.md`` (nothing drawn at σ = 0), freezing replicas as the
    reference does. ``eta`` and ``sigma`` are numbers or one per replica ((R,) arrays: one
    segment can run a whole (η, σ) grid). ``exact`` keeps large models off BLAS (bit-identical
    to the reference). Returns new (θ, alive); ``diverged_step`` (host int array) is updated in place.
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
    two_eta = np.ascontiguousarray(np.broadcast_to(2.0 * np.asarray(eta, dtype=np.float64), (R,)).astype(dt))
    sig = np.ascontiguousarray(np.broadcast_to(np.asarray(sigma, dtype=np.float64), (R,)))
    args = (th, Xc, yc, wc, two_eta, sig, _U64(key0), _U64(key1), rids, int(steps), al)
    args += (float(loss_bound), (act.p - 1) // 2, cast(act.p), cast(act.nu), int(k0), ds)
    nt = threads()
    kind, B = choose(R, m, d, Xc.shape[0], nt, exact)
    mode = {"loops": LOOPS, "blas": BLAS, "lanes": LANE_BLOCKS}[kind]
    spec = d <= SPECIALISE_MAX and Xc.shape[0] <= SPECIALISE_MAX
    work = -(-R // B) if kind == "lanes" else R  # parallel items
    use = max(1, min(nt, work))
    prev = numba.get_num_threads()
    numba.set_num_threads(use)
    try:
        if mode == BLAS:  # the threads numba leaves idle go to BLAS: never more than nt in all
            with blas_threads(max(1, nt // use)):
                _segment(*args, mode, B)
        elif mode == LOOPS:
            _loop_segment(*args, (0,) * d if spec else (), (0,) * Xc.shape[0] if spec else ())
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
