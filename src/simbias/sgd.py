"""Label-noise SGD, batched over replicas (docs/math.md; paper eq. 3's discrete origin).

θ ← θ − η ∇_θ Σ_i (f_i(θ) − y_i + ζ_i)²,  ζ_i ~ N(0, σ²) fresh every step,
i.e. θ ← θ − 2η Jᵀ(f − y + ζ). Step k sits at flow time τ = η²σ²k.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import model
from .backend import to_numpy
from .data import rng_for

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


class NoiseStreams:
    """Per-replica Gaussian label-noise streams: replica r draws from stream (seed, r).

    Draws are consumed n per step in order, so a replica's noise does not depend
    on how many replicas run beside it or on the chunk size.
    """

    def __init__(self, seed: int, replicas: int, n: int):
        self.n = n
        self.gens = [rng_for(seed, 1, r) for r in range(replicas)]

    def draw(self, steps: int) -> np.ndarray:
        """Standard normals of shape (steps, R, n).

        Each replica's draws fill its slab of an (R, steps, n) buffer, returned as a
        transposed view: the same values as stacking, without the copy, and laid out
        per replica as the compiled CPU kernel reads them.
        """
        out = np.empty((len(self.gens), steps, self.n))
        for g, slab in zip(self.gens, out, strict=True):
            g.standard_normal(out=slab)
        return out.transpose(1, 0, 2)


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
    eta: float,
    sigma: float,
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
) -> SGDResult:
    """Run label-noise SGD for ``steps`` steps on every replica at once.

    A replica whose loss becomes non-finite or exceeds ``loss_bound`` is frozen
    and flagged; its later records are NaN. ``sigma = 0`` is plain GD. Once no
    replica is left the loop stops early.

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
    """
    R, m, d = theta0.shape
    n = X.shape[0]
    if sam_rho is None:
        seg, kernel = select_advance(xp, act, dtype, cpu_kernel)
        noise = NoiseStreams(seed, R, n)

        def draw(k0: int, c: int):
            return xp.asarray(sigma * noise.draw(c), dtype=dtype)

        clock = lambda k: tau_of_step(k, eta, sigma)  # noqa: E731
    else:
        from . import sam

        noise = sam.SampleOrder(sam_order, seed, R, n)
        kernel = f"numpy-1sam-{sam_order}"

        def seg(xp_, act_, th, X_, y_, w_, eta_, idx, alive_, lb, k0, ds):
            return sam.advance(xp_, act_, th, X_, y_, w_, eta_, sam_rho, idx, alive_, lb, k0, ds)

        def draw(k0: int, c: int):
            return noise.draw(k0, c)

        clock = lambda k: sam.tau_of_step(k, eta, sam_rho, n)  # noqa: E731
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

    def record(k: int, th, alive_np: np.ndarray) -> None:
        i = rec[k]
        Z = model.preactivations(xp, th, Xd)
        vals = {
            "theta": th,
            "loss": model.loss(xp, act, th, Xd, yd, wd),
            "F": model.sharpness(xp, act, th, Xd, wd),
            "fsv": model.singular_values(xp, Z),
            "wsv": model.singular_values(xp, th),
        }
        vals = {k_: to_numpy(v).astype(np.float64) for k_, v in vals.items()}
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
            eta=float(eta),
            sigma=float(sigma),
            steps=int(steps),
            record_steps=[int(r) for r in record_steps],
            seed=int(seed),
            dtype=str(dtype),
            loss_bound=float(loss_bound),
            act=repr(act),
            sam=None if sam_rho is None else [float(sam_rho), sam_order],
            xp=xp.__name__,
            kernel=kernel,
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
        for g, st in zip(noise.gens, state.rng_states, strict=True):
            g.bit_generator.state = st
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
        zeta = draw(k, end - k)
        theta, alive = seg(xp, act, theta, Xd, yd, wd, eta, zeta, alive, loss_bound, k, diverged_step)
        k = end
        alive_np = to_numpy(alive)
        if k in rec:
            record(k, theta, alive_np)
        if not alive_np.any():
            log.warning("every replica diverged by step %d of %d: stopping early", k, steps)
            break
        if checkpoint is not None and k < steps and checkpoint.due(k):
            checkpoint.save(k, snapshot(), [g.bit_generator.state for g in noise.gens])
        now = time.monotonic()
        if progress is not None and (now - last >= progress_seconds or k == steps):
            last = now
            L = to_numpy(model.loss(xp, act, theta, Xd, yd, wd))
            progress(
                f"step {k}/{steps} ({100 * k / max(steps, 1):.0f}%), "
                f"tau={float(clock(k)):.4g}, "
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


CPU_KERNELS = ("auto", "numba", "numpy")


def select_advance(xp, act, dtype: str, cpu_kernel: str = "auto") -> tuple[Callable, str]:
    """The segment function for this array module and activation, and its name.

    The compiled CPU kernel (:mod:`simbias.kernels_cpu`) runs when ``xp`` is
    NumPy, the activation is the OddPower family and numba imports; otherwise the
    reference :func:`advance`. ``cpu_kernel="numpy"`` pins the reference,
    ``"numba"`` fails rather than fall back. With ``"auto"``, the environment
    variable ``SIMBIAS_CPU_KERNEL`` (same choices) overrides, so a whole pipeline
    run can be pinned to the reference without a config change.
    """
    if cpu_kernel == "auto":
        cpu_kernel = os.environ.get("SIMBIAS_CPU_KERNEL", "").strip() or "auto"
    if cpu_kernel not in CPU_KERNELS:
        raise ValueError(f"unknown cpu_kernel {cpu_kernel!r} ({' | '.join(CPU_KERNELS)})")
    if cpu_kernel == "numpy":
        return advance, "numpy"
    why = ""
    if xp is not np:
        why = f"array module {getattr(xp, '__name__', xp)} is not numpy"
    elif np.dtype(dtype) not in (np.float32, np.float64):
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


def advance(xp, act, theta, X, y, w, eta: float, zeta, alive, loss_bound: float, k0: int, diverged_step):
    """Run len(zeta) label-noise SGD steps from step k0: θ ← θ − 2η Jᵀ(f − y + ζ).

    The reference implementation (any array module). A replica whose loss is
    non-finite or above ``loss_bound`` before a step is frozen from that step on;
    ``diverged_step`` (host array) records the step. Returns (θ, alive).
    """
    for s in range(zeta.shape[0]):
        Z = model.preactivations(xp, theta, X)
        r = model.outputs(xp, act, Z, w) - y
        alive = freeze_diverged(xp, r, alive, loss_bound, k0 + s, diverged_step)
        g = model.jt_vec(xp, act, Z, X, w, r + zeta[s])
        theta = xp.where(alive[:, None, None], theta - (2.0 * eta) * g, theta)
    return theta, alive


def freeze_diverged(xp, r, alive, loss_bound: float, k: int, diverged_step):
    """The divergence rule: a replica whose loss Σ r² is non-finite or above ``loss_bound``
    before step k is frozen from step k on (``diverged_step`` records k). Returns the new mask."""
    bad = ~(xp.sum(r * r, axis=-1) <= loss_bound) & alive
    if bool(bad.any()):
        idx = to_numpy(bad)
        diverged_step[idx] = k
        log.warning("%d replica(s) diverged at step %d", int(idx.sum()), k)
        alive = alive & ~bad
    return alive
