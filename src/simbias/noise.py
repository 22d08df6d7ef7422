"""The label-noise stream: Philox4x32-10 and Box–Muller, a pure function of (seed, r, k, i).

Specification (``docs/noise_stream.md``): normal number i of step k of replica r is

    block  = Philox4x32-10(counter = (i // 2, k mod 2³², k // 2³², r), key = (seed mod 2³², seed // 2³²))
    u      = ((x0 >> 5) · 2²⁶ + (x1 >> 6)) · 2⁻⁵³,   t = ((x2 >> 5) · 2²⁶ + (x3 >> 6)) · 2⁻⁵³
    ρ      = sqrt(−2 log(1 − u)),   z_(2j) = ρ cos(2π t),   z_(2j+1) = ρ sin(2π t)

in float64, with log, cos and sin computed by :func:`log_unit` and :func:`sincos_2pi`
from + − × ÷, floor and frexp only, so the NumPy reference here, the numba kernel
(:mod:`simbias.kernels_cpu`) and the CUDA header (``simbias/cuda/sgd_step.cuh``) give the
same bits. The label noise is ζ = σ z, rounded to the working dtype.

This module is the NumPy reference (any array module ``xp`` with uint32/uint64 and
float64 arithmetic: NumPy or CuPy), vectorised over replicas, steps and draws.
"""

from __future__ import annotations

import numpy as np

# Philox4x32 round multipliers and Weyl key increments (Salmon et al., SC'11; Random123)
PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
PHILOX_ROUNDS = 10
MASK32 = 0xFFFFFFFF

TWO_M53 = 2.0**-53  # uniforms are multiples of 2⁻⁵³ in [0, 1)
SQRT_HALF = 0.70710678118654757  # float64 nearest √½ (the reduction threshold of log_unit)
LN2_HI = 0.69314718036912382  # ln 2 split in two: e·LN2_HI is exact for |e| < 2¹¹
LN2_LO = 1.9082149292705877e-10
HALF_PI = 1.5707963267948966  # float64 nearest π/2
# log(m) = 2 atanh(s) = 2 s Σ s^(2k) / (2k + 1), |s| ≤ 0.1716: 11 terms reach 1e-19
LOG_COEF = tuple(1.0 / (2 * k + 1) for k in range(11))
# sin x = x Σ (−1)^k x^(2k) / (2k + 1)!, cos x = Σ (−1)^k x^(2k) / (2k)!, |x| ≤ π/4
SIN_COEF = tuple((-1.0) ** k / float(np.prod(np.arange(1, 2 * k + 2, dtype=float))) for k in range(9))
COS_COEF = tuple((-1.0) ** k / float(np.prod(np.arange(1, 2 * k + 1, dtype=float))) for k in range(10))


def philox4x32(xp, c0, c1, c2, c3, k0, k1, rounds: int = PHILOX_ROUNDS):
    """Philox4x32-R of counter (c0, c1, c2, c3) under key (k0, k1); uint32 arrays (broadcast).

    Random123's schedule: R rounds, the key bumped by the Weyl increments between rounds.
    """
    u64 = xp.uint64
    m = u64(MASK32)
    c0, c1, c2, c3, k0, k1 = (xp.asarray(a).astype(u64) for a in (c0, c1, c2, c3, k0, k1))
    for rnd in range(rounds):
        if rnd:
            k0 = (k0 + u64(PHILOX_W0)) & m
            k1 = (k1 + u64(PHILOX_W1)) & m
        p0 = c0 * u64(PHILOX_M0)
        p1 = c2 * u64(PHILOX_M1)
        c0, c1, c2, c3 = (p1 >> u64(32)) ^ c1 ^ k0, p1 & m, (p0 >> u64(32)) ^ c3 ^ k1, p0 & m
    return tuple(c.astype(xp.uint32) for c in (c0, c1, c2, c3))


def seed_key(seed: int) -> tuple[int, int]:
    """Philox key (low, high 32 bits) of a non-negative seed below 2⁶⁴."""
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"the noise seed must be in [0, 2**64), got {seed}")
    return seed & MASK32, seed >> 32


def uniform53(xp, hi, lo):
    """The float64 in [0, 1) made of the top 27 bits of ``hi`` and the top 26 of ``lo``."""
    a = (xp.asarray(hi) >> xp.uint32(5)).astype(xp.float64)
    b = (xp.asarray(lo) >> xp.uint32(6)).astype(xp.float64)
    return (a * 67108864.0 + b) * TWO_M53


def _horner(x, coef):
    acc = coef[-1]
    for c in coef[-2::-1]:
        acc = c + x * acc
    return acc


def log_unit(xp, u):
    """log u for u in (0, 1], from frexp and + − × ÷ only (error about 1 ulp).

    u = m 2^e, m moved into [√½, √2); log m = 2 atanh(s), s = (m − 1)/(m + 1).
    """
    m, e = xp.frexp(u)
    low = m < SQRT_HALF
    m = xp.where(low, m * 2.0, m)
    e = (e - low.astype(e.dtype)).astype(xp.float64)
    s = (m - 1.0) / (m + 1.0)
    lm = 2.0 * s * _horner(s * s, LOG_COEF)
    return e * LN2_HI + (e * LN2_LO + lm)


def sincos_2pi(xp, t):
    """(sin 2πt, cos 2πt) for t in [0, 1), from floor and + − × ÷ only.

    4t = q + f exactly (q = floor(4t + ½), |f| ≤ ½), x = f π/2 in [−π/4, π/4]:
    the Taylor series of sin x and cos x, then the quarter turn q mod 4.
    """
    v = t * 4.0
    q = xp.floor(v + 0.5)
    x = (v - q) * HALF_PI
    x2 = x * x
    s = x * _horner(x2, SIN_COEF)
    c = _horner(x2, COS_COEF)
    qm = q.astype(xp.int64) & 3
    sin = xp.where(qm == 0, s, xp.where(qm == 1, c, xp.where(qm == 2, -s, -c)))
    cos = xp.where(qm == 0, c, xp.where(qm == 1, -s, xp.where(qm == 2, -c, s)))
    return sin, cos


def box_muller(xp, x0, x1, x2, x3):
    """Two standard normals (z_even, z_odd) from one Philox block."""
    u = uniform53(xp, x0, x1)
    t = uniform53(xp, x2, x3)
    rho = xp.sqrt(-2.0 * log_unit(xp, 1.0 - u))
    s, c = sincos_2pi(xp, t)
    return rho * c, rho * s


def normals(xp, seed: int, replicas, k0: int, steps: int, n: int):
    """Standard normals z[s, b, i] = normal i of step k0 + s of replica ``replicas[b]``, (steps, R, n) float64."""
    lo, hi = seed_key(seed)
    r = xp.asarray(replicas, dtype=xp.uint64).astype(xp.uint32)[None, :, None]
    k = xp.arange(k0, k0 + steps, dtype=xp.uint64)[:, None, None]
    j = xp.arange((n + 1) // 2, dtype=xp.uint32)[None, None, :]
    k_lo = (k & xp.uint64(MASK32)).astype(xp.uint32)
    k_hi = (k >> xp.uint64(32)).astype(xp.uint32)
    x = philox4x32(xp, j, k_lo, k_hi, r, xp.uint32(lo), xp.uint32(hi))
    z_even, z_odd = box_muller(xp, *x)
    z = xp.stack(xp.broadcast_arrays(z_even, z_odd), axis=-1)  # (steps, R, pairs, 2)
    return z.reshape(steps, z.shape[1], -1)[..., :n]
