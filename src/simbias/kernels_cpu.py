"""Compiled CPU fast path for label-noise SGD (numba): one segment of steps, all replicas.

This module holds the only second copy of the SGD step's math; the reference is
:func:`simbias.sgd.advance` (any array module), and ``tests/test_fastpath.py``
pins this kernel to it. The step (docs/math.md) is

    θ ← θ − 2η Jᵀ(f − y + ζ),   (Jᵀλ)_j = Σ_i λ_i w_j φ'(z_ji) x_i,   z_ji = θ_j · x_i,
    f_i = Σ_j w_j φ(z_ji),      φ(z) = z^p + νz,   φ'(z) = p z^(p−1) + ν   (p = 2k+1),

with the label noise ζ (steps, R, n) drawn by :class:`simbias.sgd.NoiseStreams`
in NumPy, so both paths consume the same per-replica streams. A replica whose
loss L = Σ_i (f_i − y_i)² before a step is non-finite or above ``loss_bound``
is frozen from that step on and the step is written to ``diverged_step``.

Three kernels, chosen by :func:`choose`. Small models (fig1a, fig2): with enough
replicas, they are packed into the SIMD lanes of a core (:func:`_lane_block`),
blocks of lanes running in parallel over threads; with few, one replica at a
time (:func:`_replica_steps`). These two do the same IEEE operations in the
same order for each replica (no fast-math: no FMA contraction, no
reassociation), so a replica's trajectory is bit for bit the same whichever ran
and however many replicas ran beside it. Larger models (m·d·n ≥ ``BLAS_MIN``,
fig1b) always take :func:`_replica_steps_blas`, whose two matrix products go
through BLAS, whatever the replica count. Each kernel runs replicas
independently, in parallel over replicas (``prange``) when there are several.

The thread count is numba's (``NUMBA_NUM_THREADS``, default: all cores), capped by
``OMP_NUM_THREADS`` when that is set (Snakemake sets it to a job's ``threads``).
"""

from __future__ import annotations

import contextlib
import logging
import os

import numba
import numpy as np

log = logging.getLogger(__name__)

LANES = 8  # smallest block of replicas packed into SIMD lanes (8 float64 = one AVX-512 register)
# the lane kernel keeps (m, d) + (m, n) values per lane (fig1a: 60, fig2: 110): a guard
# so a block of 64 lanes stays within a core's L2; past it, one replica at a time
_LANE_MAX_MD_MN = 4096
# from this m·d·n on (fig1b: 4500), Z = Θ Xᵀ and Jᵀλ go through BLAS (np.dot):
# measured faster than the lanes from about m·d·n = 1000 on (fig1a: 90, fig2: 300)
BLAS_MIN = 1024


@numba.njit(inline="always")
def _phi_terms(z, half, pf, nu):
    """φ(z) and φ'(z) for φ = z^p + νz, p = 2·half + 1, as z·z^(p-1) + νz and p·z^(p-1) + ν."""
    z2 = z * z
    zq = z2
    for _ in range(half - 1):
        zq *= z2  # z^(p-1)
    return z * zq + nu * z, pf * zq + nu


@numba.njit(inline="always")
def _residuals(f, y, zeta, r, s, lam):
    """λ = f − y + ζ (into lam); returns L = Σ (f − y)²."""
    loss = 0.0
    for i in range(f.shape[0]):
        res = f[i] - y[i]
        loss += res * res
        lam[i] = res + zeta[r, s, i]
    return loss


@numba.njit(cache=True, nogil=True)
def _replica_steps(th, X, XT, y, w, two_eta, zeta, r, loss_bound, half, pf, nu, zero, Z, D, f, lam, g):
    """Run zeta.shape[1] steps on one replica's θ (m, d), in place; ζ is (R, steps, n).

    Returns the step (within the segment) at which the replica was found
    diverged, or -1. Scratch: Z, D (m, n), f, lam (n,), g (d,).
    """
    m, d = th.shape
    n = X.shape[0]
    dot = d <= 8  # short sums: reductions; long ones: axpy loops (same order of operations)
    for s in range(zeta.shape[1]):
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
        loss = _residuals(f, y, zeta, r, s, lam)
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
def _replica_steps_blas(th, X, XT, y, w, two_eta, zeta, r, loss_bound, half, pf, nu, D, f, lam):
    """:func:`_replica_steps` for large models: Z = Θ Xᵀ and g = (D ∘ λ) X as BLAS matrix products."""
    m, d = th.shape
    n = X.shape[0]
    for s in range(zeta.shape[1]):
        Z = np.dot(th, XT)
        for i in range(n):
            f[i] = 0.0
        for j in range(m):
            wj = w[j]
            for i in range(n):
                phi, dphi = _phi_terms(Z[j, i], half, pf, nu)
                f[i] += wj * phi
                D[j, i] = wj * dphi
        loss = _residuals(f, y, zeta, r, s, lam)
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


@numba.njit(cache=True, nogil=True)
def _lane_block(theta, X, y, w, two_eta, zeta, alive, loss_bound, half, pf, nu, k0, diverged_step, r0, B):
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
    loss = np.empty(B, dtype=np.float64)
    live = np.zeros(B, dtype=np.bool_)
    for b in range(nb):
        if alive[r0 + b]:
            live[b] = True
            for j in range(m):
                for k in range(d):
                    th[j, k, b] = theta[r0 + b, j, k]
    for s in range(zeta.shape[1]):
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
            for b in range(nb):
                li[b] += zeta[r0 + b, s, i]
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


@numba.njit(cache=True, nogil=True, parallel=True)
def _segment(theta, X, y, w, two_eta, zeta, alive, loss_bound, half, pf, nu, k0, diverged_step, mode, B):
    """All replicas of one segment, in parallel over replicas (or blocks of B lanes).

    mode LOOPS: :func:`_replica_steps`; BLAS: :func:`_replica_steps_blas`;
    LANE_BLOCKS: :func:`_lane_block` on blocks of B replicas.
    """
    R, m, d = theta.shape
    n = X.shape[0]
    if mode == LANE_BLOCKS:
        nblocks = (R + B - 1) // B
        for blk in numba.prange(nblocks):
            _lane_block(
                theta, X, y, w, two_eta, zeta, alive, loss_bound, half, pf, nu, k0, diverged_step, blk * B, B
            )
        return
    XT = np.ascontiguousarray(X.T)
    zero = pf - pf
    for r in numba.prange(R):
        if not alive[r]:
            continue
        D = np.empty((m, n), dtype=theta.dtype)
        f = np.empty(n, dtype=theta.dtype)
        lam = np.empty(n, dtype=theta.dtype)
        if mode == BLAS:
            s = _replica_steps_blas(
                theta[r], X, XT, y, w, two_eta, zeta, r, loss_bound, half, pf, nu, D, f, lam
            )
        else:
            Z = np.empty((m, n), dtype=theta.dtype)
            g = np.empty(d, dtype=theta.dtype)
            s = _replica_steps(
                theta[r], X, XT, y, w, two_eta, zeta, r, loss_bound, half, pf, nu, zero, Z, D, f, lam, g
            )
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


def choose(R: int, m: int, d: int, n: int, nthreads: int) -> tuple[str, int]:
    """Which kernel runs: ('blas', 0), ('lanes', B) or ('loops', 0).

    Large models (m·d·n ≥ ``BLAS_MIN``) always take the BLAS kernel, whatever R;
    otherwise lanes pay once every thread gets a block of at least ``LANES``
    replicas (blocks grow to 64 lanes with R), and below that one replica at a
    time. For a given model size every choice gives the same bits per replica.
    """
    if m * d * n >= BLAS_MIN:
        return "blas", 0
    if R >= LANES * nthreads and m * (d + n) <= _LANE_MAX_MD_MN:
        per_thread = -(-R // nthreads)
        return "lanes", int(min(64, max(LANES, -(-per_thread // LANES) * LANES)))
    return "loops", 0


def advance(xp, act, theta, X, y, w, eta: float, zeta, alive, loss_bound: float, k0: int, diverged_step):
    """Drop-in for :func:`simbias.sgd.advance` on NumPy arrays and OddPower activations.

    Runs len(zeta) steps θ ← θ − 2η Jᵀ(f − y + ζ) (float32 or float64: the dtype
    of ``theta``), freezing replicas as the reference does. Returns new (θ, alive);
    ``diverged_step`` (host int array) is updated in place.
    """
    dt = np.dtype(theta.dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"the CPU kernel needs float32 or float64, got {dt}")
    th = np.array(theta, dtype=dt, order="C", copy=True)
    al = np.array(alive, dtype=np.bool_, copy=True)
    Xc, yc, wc = (np.ascontiguousarray(a, dtype=dt) for a in (X, y, w))
    # the kernels read ζ per replica, (R, steps, n); NoiseStreams.draw already lays it out so
    zc = np.ascontiguousarray(np.asarray(zeta, dtype=dt).transpose(1, 0, 2))
    ds = np.ascontiguousarray(diverged_step, dtype=np.int64)
    R, m, d = th.shape
    cast = dt.type
    args = (th, Xc, yc, wc, cast(2.0 * eta), zc, al, float(loss_bound))
    args += ((act.p - 1) // 2, cast(act.p), cast(act.nu), int(k0), ds)
    nt = threads()
    kind, B = choose(R, m, d, Xc.shape[0], nt)
    mode = {"loops": LOOPS, "blas": BLAS, "lanes": LANE_BLOCKS}[kind]
    work = -(-R // B) if kind == "lanes" else R  # parallel items
    use = max(1, min(nt, work))
    prev = numba.get_num_threads()
    numba.set_num_threads(use)
    try:
        if mode == BLAS and use > 1:  # BLAS calls from several numba threads: one BLAS thread each
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
