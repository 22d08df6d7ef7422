"""1-SAM: sharpness-aware minimisation with batch size 1 (paper §1, Wen et al. 2022).

One sample i per step, chosen uniformly at random (per-replica stream) or in
cyclic order i = k mod n. With L_i = (f_i − y_i)² and g_i = ∇L_i = 2 r_i ∇f_i:

    θ ← θ − η ∇L_i(θ + ρ g_i / ‖g_i‖).

Clock. Near M the ascent direction is ±∇f_i/‖∇f_i‖ and ∇²L_i = 2∇f_i∇f_iᵀ is
normal, so the tangent drift comes from the third-order term
(ρ²/2) ∇³L_i[u, u] with u = ∇f_i/‖∇f_i‖. Its tangent part is
4 (∇f_i·u) P∇²f_i u = 2 P∇‖∇f_i‖², so one step moves θ along −ηρ² ∇_M ‖∇f_i‖².
Averaged over i (uniform, or over one cycle) that is −(ηρ²/n) ∇_M F, because
F = Σ_i ‖∇f_i‖². Hence 1-SAM step k sits at flow time

    τ = η ρ² k / n        (dθ/dτ = −∇_M F, the same flow as label-noise SGD),

up to O(η) corrections; tests/test_sam.py checks this clock as the SGD clock is checked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import model, noise
from .step_rule import Segment, freeze_diverged


def tau_of_step(step, eta: float, rho: float, n: int):
    """1-SAM clock τ = ηρ²k/n (derived in the module docstring)."""
    return eta * rho**2 * np.asarray(step, dtype=float) / n


SAMPLE_WORD = 0x80000000  # counter word 0 of the sample-order stream (label noise uses words < 2³¹)


class SampleOrder:
    """Which sample each replica uses at each step: 'random' or 'cyclic' (i = k mod n).

    'random': sample of step k of replica r is floor(n u), u the first uniform of
    Philox block (2³¹, k mod 2³², k // 2³², r) under the seed's key
    (``docs/noise_stream.md``): counter-based like the label noise, so it needs no state.
    """

    def __init__(self, order: str, seed: int, replicas, n: int):
        self.order, self.n, self.seed = order, n, seed
        self.replicas = (
            np.arange(replicas) if np.ndim(replicas) == 0 else np.asarray(replicas, dtype=np.int64)
        )

    def draw(self, k0: int, steps: int) -> np.ndarray:
        """Sample indices of shape (steps, R) for steps k0 .. k0 + steps − 1."""
        R = len(self.replicas)
        if self.order == "cyclic":
            idx = (k0 + np.arange(steps)) % self.n
            return np.repeat(idx[:, None], R, axis=1)
        lo, hi = noise.seed_key(self.seed)
        k = np.arange(k0, k0 + steps, dtype=np.uint64)[:, None]
        x = noise.philox4x32(
            np,
            np.uint32(SAMPLE_WORD),
            (k & np.uint64(noise.MASK32)).astype(np.uint32),
            (k >> np.uint64(32)).astype(np.uint32),
            self.replicas.astype(np.uint32)[None, :],
            np.uint32(lo),
            np.uint32(hi),
        )
        u = noise.uniform53(np, x[0], x[1])
        return np.minimum((u * self.n).astype(np.int64), self.n - 1)


@dataclass
class OneSAM:
    """1-SAM as a step rule (:mod:`simbias.step_rule`) on ``n`` samples: ascent radius ``rho``,
    samples in ``order`` ('random': per-replica streams from ``seed``; 'cyclic'); NumPy
    reference only."""

    eta: float
    rho: float
    order: str
    seed: int
    n: int

    def tau(self, step) -> np.ndarray:
        return tau_of_step(step, self.eta, self.rho, self.n)

    def key(self) -> dict:
        return {"algorithm": "one_sam", "eta": float(self.eta), "rho": float(self.rho), "order": self.order,
                "seed": int(self.seed)}  # fmt: skip

    def segments(self, xp, act, X, y, w, replicas: np.ndarray, dtype: str) -> tuple[Segment, str]:
        order = SampleOrder(self.order, self.seed, replicas, self.n)
        eta, rho = self.eta, self.rho

        def run_segment(th, al, k0: int, c: int, loss_bound: float, diverged_step):
            idx = order.draw(k0, c)
            return advance(xp, act, th, X, y, w, eta, rho, idx, al, loss_bound, k0, diverged_step)

        return run_segment, f"numpy-1sam-{self.order}"


def advance(
    xp, act, theta, X, y, w, eta: float, rho: float, idx, alive, loss_bound: float, k0: int, diverged_step
):
    """Run len(idx) 1-SAM steps (idx: (steps, R) sample indices); same freezing rule as SGD."""
    n = X.shape[0]
    eye = xp.eye(n, dtype=theta.dtype)
    for s in range(idx.shape[0]):
        onehot = eye[xp.asarray(idx[s])]  # (R, n)
        Z = model.preactivations(xp, theta, X)
        r = model.outputs(xp, act, Z, w) - y
        alive = freeze_diverged(xp, xp.sum(r * r, axis=-1), alive, loss_bound, k0 + s, diverged_step)
        g = 2.0 * model.jt_vec(xp, act, Z, X, w, onehot * r)
        gn = model.norm(xp, g)
        scale = xp.where(gn > 0, rho / xp.where(gn > 0, gn, 1.0), 0.0)
        th_adv = theta + scale[:, None, None] * g
        Z2 = model.preactivations(xp, th_adv, X)
        r2 = model.outputs(xp, act, Z2, w) - y
        g2 = 2.0 * model.jt_vec(xp, act, Z2, X, w, onehot * r2)
        theta = xp.where(alive[:, None, None], theta - eta * g2, theta)
    return theta, alive
