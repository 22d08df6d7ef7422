"""Label-noise SGD, batched over replicas (docs/math.md; paper eq. 3's discrete origin).

θ ← θ − η ∇_θ Σ_i (f_i(θ) − y_i + ζ_i)²,  ζ_i ~ N(0, σ²) fresh every step,
i.e. θ ← θ − 2η Jᵀ(f − y + ζ). Step k sits at flow time τ = η²σ²k. The noise ζ_i of
step k of replica r is σ times normal i of the counter-based stream (seed, r, k)
(:mod:`simbias.noise`, ``docs/noise_stream.md``), the same on every backend.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import model, noise
from .backend import to_numpy

log = logging.getLogger(__name__)


def tau_of_step(step, eta: float, sigma: float):
    """The SGD-to-flow clock τ = η²σ²k (Li, Wang & Arora 2021; docs/math.md)."""
    return eta**2 * sigma**2 * np.asarray(step, dtype=float)


def record_schedule(steps: int, log_points: int, linear_points: int) -> np.ndarray:
    """Record steps: log-spaced and linear points in [0, steps], always with 0 and steps."""
    pts = {0, steps}
    if steps > 0 and log_points > 0:
        pts.update(np.unique(np.round(np.logspace(0, np.log10(steps), log_points))).astype(int))
    if linear_points > 0:
        pts.update(np.round(np.linspace(0, steps, linear_points)).astype(int))
    return np.array(sorted(p for p in pts if 0 <= p <= steps), dtype=np.int64)


@dataclass
class SGDResult:
    step: np.ndarray  # (T,)
    theta: np.ndarray  # (R, T, m, d)
    loss: np.ndarray  # (R, T)
    sharpness: np.ndarray  # (R, T)
    feature_sv: np.ndarray  # (R, T, min(m, n))
    weight_sv: np.ndarray  # (R, T, min(m, d))
    diverged: np.ndarray  # (R,) bool
    diverged_step: np.ndarray  # (R,) int, -1 when not diverged
    kernel: str = "numpy"  # which segment function ran: "numpy" (reference) or "numba"


def label_noise_sgd(
    xp,
    act,
    theta0: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    *,
    eta: float | np.ndarray,
    sigma: float | np.ndarray,
    steps: int,
    record_steps: np.ndarray,
    seed: int,
    dtype: str = "float64",
    loss_bound: float = 1e6,
    chunk: int = 2048,
    progress: Callable[[str], None] | None = None,
    progress_seconds: float = 10.0,
    cpu_kernel: str = "auto",
    checkpoint: Any | None = None,
    sam_rho: float | None = None,
    sam_order: str = "random",
    replicas: np.ndarray | None = None,
) -> SGDResult:
    """Run label-noise SGD for ``steps`` steps on every replica at once.

    A replica whose loss becomes non-finite or exceeds ``loss_bound`` is frozen
    and flagged; its later records are NaN. ``sigma = 0`` is plain GD. Once no
    replica is left the loop stops early. ``eta`` and ``sigma`` are numbers or one
    per replica ((R,) arrays), so one run can hold a whole (η, σ) grid; each replica's
    clock is then its own τ = η_r²σ_r²k.

    ``checkpoint`` (a :class:`simbias.checkpoint.SGDCheckpoint`) saves the loop's
    whole state at segment ends when due; if it holds a state for this exact run,
    the loop resumes from it, and the result is identical to an uninterrupted run
    (a replica's noise and steps do not depend on where segments end).

    ``cpu_kernel`` picks the segment function on NumPy arrays (see
    :func:`select_advance`): ``"auto"`` (the compiled kernel where it applies),
    ``"numba"`` (require it) or ``"numpy"`` (the reference :func:`advance`).

    With ``sam_rho`` set, the same loop (records, divergence, checkpoints) runs
    1-SAM instead (:mod:`simbias.sam`): one sample per step, in ``sam_order``
    ('random': per-replica streams from ``seed``; 'cyclic'), ascent radius ρ;
    ``sigma`` is then unused.

    ``replicas`` (R,) are the replicas' ids in the noise stream (default 0..R−1): a run
    holding P grid points of R replicas each passes ``tile(arange(R), P)``, so every point
    draws the noise its own run would (docs/noise_stream.md).
    """
    R, m, d = theta0.shape
    n = X.shape[0]
    if replicas is None:
        replicas = np.arange(R, dtype=np.int64)
    replicas = np.asarray(replicas, dtype=np.int64)
    if replicas.shape != (R,):
        raise ValueError(f"replicas: {R} ids needed (one per replica), got shape {replicas.shape}")
    if sam_rho is None:
        seg, kernel = select_advance(xp, act, dtype, cpu_kernel, shape=(m, d, n))

        def run_segment(th, al, k0: int, c: int):
            return seg(
                xp, act, th, Xd, yd, wd, eta, sigma, seed, replicas, k0, c, al, loss_bound, diverged_step
            )

        clock = lambda k: tau_of_step(k, eta, sigma)  # noqa: E731
    else:
        from . import sam

        order = sam.SampleOrder(sam_order, seed, replicas, n)
        kernel = f"numpy-1sam-{sam_order}"

        def run_segment(th, al, k0: int, c: int):
            idx = order.draw(k0, c)
            return sam.advance(xp, act, th, Xd, yd, wd, eta, sam_rho, idx, al, loss_bound, k0, diverged_step)

        clock = lambda k: sam.tau_of_step(k, eta, sam_rho, n)  # noqa: E731
    if kernel.startswith("cupy"):
        chunk = max(chunk, GPU_CHUNK)  # one launch per segment: state stays on the GPU
    log.info("segment function %s", kernel)
    Xd, yd, wd = (xp.asarray(a, dtype=dtype) for a in (X, y, w))
    theta = xp.asarray(theta0, dtype=dtype)
    rec = {int(s): i for i, s in enumerate(record_steps)}
    T = len(record_steps)
    out_theta = np.full((R, T, m, d), np.nan)
    out_loss = np.full((R, T), np.nan)
    out_F = np.full((R, T), np.nan)
    out_fsv = np.full((R, T, min(m, n)), np.nan)
    out_wsv = np.full((R, T, min(m, d)), np.nan)
    alive = xp.ones(R, dtype=bool)
    diverged_step = np.full(R, -1, dtype=np.int64)

    Xh, yh, wh = (np.asarray(a, dtype=dtype) for a in (X, y, w))

    def record(k: int, th, alive_np: np.ndarray) -> None:
        """A record's diagnostics, computed from θ on the host with NumPy whatever the backend:
        where two backends' θ agree bit for bit, so do their sgd.nc files."""
        i = rec[k]
        th = to_numpy(th)
        Z = model.preactivations(np, th, Xh)
        vals = {
            "theta": th,
            "loss": model.loss(np, act, th, Xh, yh, wh),
            "F": model.sharpness(np, act, th, Xh, wh),
            "fsv": model.singular_values(np, Z),
            "wsv": model.singular_values(np, th),
        }
        vals = {k_: v.astype(np.float64) for k_, v in vals.items()}
        a = alive_np
        out_theta[a, i] = vals["theta"][a]
        out_loss[a, i] = vals["loss"][a]
        out_F[a, i] = vals["F"][a]
        out_fsv[a, i] = vals["fsv"][a]
        out_wsv[a, i] = vals["wsv"][a]

    def snapshot() -> dict[str, np.ndarray]:
        return {
            "theta": to_numpy(theta),
            "alive": to_numpy(alive),
            "diverged_step": diverged_step,
            "out_theta": out_theta,
            "out_loss": out_loss,
            "out_F": out_F,
            "out_fsv": out_fsv,
            "out_wsv": out_wsv,
        }

    k = 0
    state = None
    if checkpoint is not None:
        checkpoint.bind(
            theta0=to_numpy(theta0),
            X=to_numpy(X),
            y=to_numpy(y),
            w=to_numpy(w),
            eta=_number_or_list(eta),
            sigma=_number_or_list(sigma),
            steps=int(steps),
            record_steps=[int(r) for r in record_steps],
            seed=int(seed),
            dtype=str(dtype),
            loss_bound=float(loss_bound),
            act=repr(act),
            sam=None if sam_rho is None else [float(sam_rho), sam_order],
            xp=xp.__name__,
            kernel=kernel,
            replicas=[int(r) for r in replicas],
        )
        state = checkpoint.load()
    if state is not None:
        k = state.step
        theta = xp.asarray(state.arrays["theta"], dtype=dtype)
        alive = xp.asarray(state.arrays["alive"])
        diverged_step[:] = state.arrays["diverged_step"]
        for name, arr in (
            ("out_theta", out_theta),
            ("out_loss", out_loss),
            ("out_F", out_F),
            ("out_fsv", out_fsv),
            ("out_wsv", out_wsv),
        ):
            arr[...] = state.arrays[name]
    elif 0 in rec:
        record(0, theta, np.ones(R, dtype=bool))
    k_start = k
    t0 = last = time.monotonic()
    stops = sorted(set(int(r) for r in record_steps if 0 < r <= steps) | {steps})
    while k < steps:
        # a segment ends at the next record step, the next checkpoint step or after `chunk` steps
        nxt = next(st for st in stops if st > k)
        if checkpoint is not None and (c := checkpoint.next_step(k)) is not None:
            nxt = min(nxt, c)
        end = min(k + chunk, nxt)
        theta, alive = run_segment(theta, alive, k, end - k)
        k = end
        alive_np = to_numpy(alive)
        if k in rec:
            record(k, theta, alive_np)
        if not alive_np.any():
            log.warning("every replica diverged by step %d of %d: stopping early", k, steps)
            break
        if checkpoint is not None and k < steps and checkpoint.due(k):
            checkpoint.save(k, snapshot())
        now = time.monotonic()
        if progress is not None and (now - last >= progress_seconds or k == steps):
            last = now
            L = to_numpy(model.loss(xp, act, theta, Xd, yd, wd))
            progress(
                f"step {k}/{steps} ({100 * k / max(steps, 1):.0f}%), "
                f"tau={float(np.median(clock(k))):.4g}, "
                f"median loss {np.nanmedian(L):.3e}, alive {int(alive_np.sum())}/{R}, "
                f"{(k - k_start) * R / max(now - t0, 1e-9):.3g} replica-steps/s"
            )
    return SGDResult(
        step=np.asarray(record_steps, dtype=np.int64),
        theta=out_theta,
        loss=out_loss,
        sharpness=out_F,
        feature_sv=out_fsv,
        weight_sv=out_wsv,
        diverged=diverged_step >= 0,
        diverged_step=diverged_step,
        kernel=kernel,
    )


def _number_or_list(v):
    """η or σ as the checkpoint records it: a float, or a list for one value per replica."""
    a = np.asarray(v, dtype=float)
    return float(a) if a.ndim == 0 else a.tolist()


CPU_KERNELS = ("auto", "numba", "numpy")
GPU_CHUNK = 1 << 16  # steps per GPU launch at most (segments still end at record and checkpoint steps)


def select_advance(
    xp,
    act,
    dtype: str,
    cpu_kernel: str = "auto",
    shape: tuple[int, int, int] | None = None,
    gpu_fast: bool = False,
) -> tuple[Callable, str]:
    """The segment function for this array module and activation, and its name.

    With CuPy arrays and the OddPower family: the CUDA kernels (:mod:`simbias.gpu`;
    ``shape`` = (m, d, n) names the one chosen, ``gpu_fast`` its fast mode). With NumPy,
    the compiled CPU kernel (:mod:`simbias.kernels_cpu`) when the activation is the
    OddPower family and numba imports; otherwise the reference :func:`advance`.
    ``cpu_kernel="numpy"`` pins the reference, ``"numba"`` fails rather than fall back.
    With ``"auto"``, the environment variable ``SIMBIAS_CPU_KERNEL`` (same choices)
    overrides, so a whole pipeline run can be pinned to the reference without a config change.
    """
    if cpu_kernel == "auto":
        cpu_kernel = os.environ.get("SIMBIAS_CPU_KERNEL", "").strip() or "auto"
    if cpu_kernel not in CPU_KERNELS:
        raise ValueError(f"unknown cpu_kernel {cpu_kernel!r} ({' | '.join(CPU_KERNELS)})")
    odd_power = getattr(act, "name", "") == "odd_power" and getattr(act, "p", 0) >= 3
    floating = np.dtype(dtype) in (np.float32, np.float64)
    if getattr(xp, "__name__", "") == "cupy" and odd_power and floating:
        from . import gpu

        def seg(*a, **k):
            return gpu.advance(*a, fast=gpu_fast, **k)

        name = gpu.kernel_name(*shape, str(np.dtype(dtype)), gpu_fast) if shape else "cupy"
        return seg, name
    if cpu_kernel == "numpy":
        return advance, "numpy"
    why = ""
    if xp is not np:
        why = f"array module {getattr(xp, '__name__', xp)} is not numpy"
    elif not floating:
        why = f"dtype {dtype} is not float32/float64"
    else:
        try:
            from . import kernels_cpu
        except ImportError as exc:
            why = f"numba not importable ({exc})"
        else:
            if kernels_cpu.supports(act):
                return kernels_cpu.advance, "numba"
            why = f"activation {act!r} is not the OddPower family"
    if cpu_kernel == "numba":
        raise RuntimeError(f"cpu_kernel 'numba' requested but not usable: {why}")
    return advance, "numpy"


def activation_terms(xp, act, Z):
    """φ(Z) and φ'(Z) as the SGD step computes them.

    For the OddPower family φ = z^p + νz: z·z^(p−1) + νz and p·z^(p−1) + ν with
    z^(p−1) = (z·z)^((p−1)/2) by repeated products (what the compiled kernels do, so
    the reference and they round alike); other activations: ``act.phi``, ``act.d1``.
    """
    from .activations import OddPower

    if not isinstance(act, OddPower):
        return act.phi(Z), act.d1(Z)
    t = Z.dtype.type
    z2 = Z * Z
    zq = z2
    for _ in range((act.p - 1) // 2 - 1):
        zq = zq * z2
    return Z * zq + t(act.nu) * Z, t(act.p) * zq + t(act.nu)


NOISE_BLOCK = 1 << 18  # normals generated at once by the reference (memory bound of a segment)


# fmt: off
def advance(xp, act, theta, X, y, w, eta, sigma, seed: int, replicas, k0: int, steps: int,
            alive, loss_bound: float, diverged_step):
    # fmt: on
    """Run ``steps`` label-noise SGD steps from step k0: θ ← θ − 2η Jᵀ(f − y + ζ).

    The reference implementation (any array module), vectorised over replicas, with
    every sum taken in a fixed order (Z over features, f over neurons, L and Jᵀλ over
    samples) so the compiled kernels reproduce it bit for bit. Replica b's noise is
    ζ = σ z from stream ``replicas[b]`` of :func:`simbias.noise.normals` (nothing is
    drawn at σ = 0). ``eta`` and ``sigma`` are numbers or one per replica ((R,) arrays;
    2η is formed in float64 and rounded to θ's dtype). A replica whose loss is
    non-finite or above ``loss_bound`` before a step is frozen from that step on;
    ``diverged_step`` (host array) records the step. Returns (θ, alive).
    """
    R, m, d = theta.shape
    n = X.shape[0]
    dt = theta.dtype
    two_eta = xp.asarray(np.broadcast_to(2.0 * np.asarray(eta, dtype=np.float64), (R,)).astype(dt))
    two_eta = two_eta[:, None, None]
    sig = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (R,))
    noisy = sig != 0
    some_noise, all_noise = bool(noisy.any()), bool(noisy.all())
    sig_x, noisy_x = xp.asarray(sig)[:, None], xp.asarray(noisy)[:, None]
    block = max(1, NOISE_BLOCK // max(1, R * n))
    zeta = None
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging replica overflows: it is frozen
        for s in range(steps):
            if some_noise and s % block == 0:
                z = noise.normals(xp, seed, replicas, k0 + s, min(block, steps - s), n)
                zeta = (sig_x * z).astype(dt)
            Z = theta[:, :, 0, None] * X[:, 0]  # z_ji = Σ_k θ_jk x_ik, k in order
            for k in range(1, d):
                Z = Z + theta[:, :, k, None] * X[:, k]
            phi, dphi = activation_terms(xp, act, Z)
            f = w[0] * phi[:, 0]  # f_i = Σ_j w_j φ(z_ji), j in order
            for j in range(1, m):
                f = f + w[j] * phi[:, j]
            res = f - y
            loss = (res[:, 0] * res[:, 0]).astype(xp.float64)  # L = Σ_i r_i², i in order, float64
            for i in range(1, n):
                loss = loss + (res[:, i] * res[:, i]).astype(xp.float64)
            alive = freeze_diverged(xp, loss, alive, loss_bound, k0 + s, diverged_step)
            if all_noise:
                lam = res + zeta[s % block]
            elif some_noise:  # σ = 0 replicas take λ = f − y exactly (no + 0)
                lam = xp.where(noisy_x, res + zeta[s % block], res)
            else:
                lam = res
            c = (w[:, None] * dphi) * lam[:, None, :]  # D_ji λ_i
            g = c[:, :, 0, None] * X[0]  # (Jᵀλ)_jk = Σ_i D_ji λ_i x_ik, i in order
            for i in range(1, n):
                g = g + c[:, :, i, None] * X[i]
            theta = xp.where(alive[:, None, None], theta - two_eta * g, theta)
    return theta, alive


def freeze_diverged(xp, loss, alive, loss_bound: float, k: int, diverged_step):
    """The divergence rule: a replica whose loss L = Σ r² (per replica) is non-finite or above
    ``loss_bound`` before step k is frozen from step k on (``diverged_step`` records k).
    Returns the new mask."""
    bad = ~(loss <= loss_bound) & alive
    if bool(bad.any()):
        idx = to_numpy(bad)
        diverged_step[idx] = k
        log.warning("%d replica(s) diverged at step %d", int(idx.sum()), k)
        alive = alive & ~bad
    return alive
