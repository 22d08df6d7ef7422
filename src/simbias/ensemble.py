"""The ensemble runner: any step rule, on every replica at once (docs/architecture.md).

One loop for every algorithm (:mod:`simbias.step_rule`) and kernel: it cuts the run into
segments that end at record steps, checkpoint steps or after ``chunk`` steps; records θ
and its diagnostics; saves and resumes checkpoints; stops once every replica diverged;
reports progress.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import model
from .backend import to_numpy
from .step_rule import StepRule

log = logging.getLogger(__name__)

GPU_CHUNK = 1 << 16  # steps per GPU launch at most (segments still end at record and checkpoint steps)


def _singular_values(A: np.ndarray) -> np.ndarray:
    """Singular values of each matrix in a batch; NaN for a matrix with a non-finite entry (a
    replica that blew up in the step before a record: the divergence rule freezes it at the next
    step; LAPACK would stop the whole run with "SVD did not converge")."""
    ok = np.isfinite(A).all(axis=(-2, -1))
    if ok.all():
        return model.singular_values(np, A)
    out = np.full(A.shape[:-2] + (min(A.shape[-2:]),), np.nan, dtype=A.dtype)
    out[ok] = model.singular_values(np, A[ok])
    return out


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


def run(
    xp,
    act,
    rule: StepRule,
    theta0: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    *,
    steps: int,
    record_steps: np.ndarray,
    dtype: str = "float64",
    loss_bound: float = 1e6,
    chunk: int = 2048,
    progress: Callable[[str], None] | None = None,
    progress_seconds: float = 10.0,
    checkpoint: Any | None = None,
    replicas: np.ndarray | None = None,
) -> SGDResult:
    """Run ``rule`` for ``steps`` steps on every replica at once.

    A replica whose loss becomes non-finite or exceeds ``loss_bound`` is frozen
    and flagged; its later records are NaN. Once no replica is left the loop stops
    early.

    ``checkpoint`` (a :class:`simbias.checkpoint.SGDCheckpoint`) saves the loop's
    whole state at segment ends when due; if it holds a state for this exact run,
    the loop resumes from it, and the result is identical to an uninterrupted run
    (a replica's noise and steps do not depend on where segments end).

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
    Xd, yd, wd = (xp.asarray(a, dtype=dtype) for a in (X, y, w))
    run_segment, kernel = rule.segments(xp, act, Xd, yd, wd, replicas, dtype)
    if kernel.startswith("cupy"):
        chunk = max(chunk, GPU_CHUNK)  # one launch per segment: state stays on the GPU
    log.info("segment function %s", kernel)
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
            "fsv": _singular_values(Z),
            "wsv": _singular_values(th),
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
            rule=rule.key(),
            steps=int(steps),
            record_steps=[int(r) for r in record_steps],
            dtype=str(dtype),
            loss_bound=float(loss_bound),
            act=repr(act),
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
        theta, alive = run_segment(theta, alive, k, end - k, loss_bound, diverged_step)
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
                f"tau={float(np.median(rule.tau(k))):.4g}, "
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
