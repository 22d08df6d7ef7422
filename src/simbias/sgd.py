"""Label-noise SGD, batched over replicas (DESIGN.md §1; paper eq. 3's discrete origin).

θ ← θ − η ∇_θ Σ_i (f_i(θ) − y_i + ζ_i)²,  ζ_i ~ N(0, σ²) fresh every step,
i.e. θ ← θ − 2η Jᵀ(f − y + ζ). Step k sits at flow time τ = η²σ²k.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import model
from .backend import to_numpy
from .data import rng_for

log = logging.getLogger(__name__)


def tau_of_step(step, eta: float, sigma: float):
    """The SGD-to-flow clock τ = η²σ²k (Li, Wang & Arora 2021; DESIGN.md §1)."""
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
        """Standard normals of shape (steps, R, n)."""
        return np.stack([g.standard_normal((steps, self.n)) for g in self.gens], axis=1)


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
) -> SGDResult:
    """Run label-noise SGD for ``steps`` steps on every replica at once.

    A replica whose loss becomes non-finite or exceeds ``loss_bound`` is frozen
    and flagged; its later records are NaN. ``sigma = 0`` is plain GD.
    """
    R, m, d = theta0.shape
    n = X.shape[0]
    Xd, yd, wd = (xp.asarray(a, dtype=dtype) for a in (X, y, w))
    theta = xp.asarray(theta0, dtype=dtype)
    noise = NoiseStreams(seed, R, n)
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

    t0 = last = time.monotonic()
    k = 0
    if 0 in rec:
        record(0, theta, np.ones(R, dtype=bool))
    stops = sorted(set(int(r) for r in record_steps if 0 < r <= steps) | {steps})
    while k < steps:
        # a segment ends at the next record step or after `chunk` steps
        end = min(k + chunk, next(st for st in stops if st > k))
        zeta = xp.asarray(sigma * noise.draw(end - k), dtype=dtype)
        theta, alive = advance(xp, act, theta, Xd, yd, wd, eta, zeta, alive, loss_bound, k, diverged_step)
        k = end
        if k in rec:
            record(k, theta, to_numpy(alive))
        now = time.monotonic()
        if progress is not None and (now - last >= progress_seconds or k == steps):
            last = now
            L = to_numpy(model.loss(xp, act, theta, Xd, yd, wd))
            progress(
                f"step {k}/{steps} ({100 * k / max(steps, 1):.0f}%), "
                f"tau={float(tau_of_step(k, eta, sigma)):.4g}, "
                f"median loss {np.nanmedian(L):.3e}, alive {int(to_numpy(alive).sum())}/{R}, "
                f"{k * R / max(now - t0, 1e-9):.3g} replica-steps/s"
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
    )


def advance(xp, act, theta, X, y, w, eta: float, zeta, alive, loss_bound: float, k0: int, diverged_step):
    """Run len(zeta) label-noise SGD steps from step k0: θ ← θ − 2η Jᵀ(f − y + ζ).

    The reference implementation (any array module). A replica whose loss is
    non-finite or above ``loss_bound`` before a step is frozen from that step on;
    ``diverged_step`` (host array) records the step. Returns (θ, alive).
    """
    for s in range(zeta.shape[0]):
        Z = model.preactivations(xp, theta, X)
        r = model.outputs(xp, act, Z, w) - y
        bad = ~(xp.sum(r * r, axis=-1) <= loss_bound) & alive
        if bool(bad.any()):
            idx = to_numpy(bad)
            diverged_step[idx] = k0 + s
            alive = alive & ~bad
            log.warning("%d replica(s) diverged at step %d", int(idx.sum()), k0 + s)
        g = model.jt_vec(xp, act, Z, X, w, r + zeta[s])
        theta = xp.where(alive[:, None, None], theta - (2.0 * eta) * g, theta)
    return theta, alive
