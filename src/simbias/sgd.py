"""Label-noise SGD as a step rule, batched over replicas (docs/math.md; paper eq. 3's discrete origin).

θ ← θ − η ∇_θ Σ_i (f_i(θ) − y_i + ζ_i)²,  ζ_i ~ N(0, σ²) fresh every step,
i.e. θ ← θ − 2η Jᵀ(f − y + ζ). Step k sits at flow time τ = η²σ²k. The noise ζ_i of
step k of replica r is σ times normal i of the counter-based stream (seed, r, k)
(:mod:`simbias.noise`, ``docs/noise_stream.md``), the same on every backend.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import ensemble, noise
from .ensemble import SGDResult
from .step_rule import Segment, freeze_diverged


def tau_of_step(step, eta: float, sigma: float):
    """The SGD-to-flow clock τ = η²σ²k (Li, Wang & Arora 2021; docs/math.md)."""
    return eta**2 * sigma**2 * np.asarray(step, dtype=float)


@dataclass
class LabelNoise:
    """Label-noise SGD as a step rule (:mod:`simbias.step_rule`); ``sigma = 0`` is plain GD.

    ``eta`` and ``sigma`` are numbers or one per replica ((R,) arrays), so one run can hold
    a whole (η, σ) grid; each replica's clock is then its own τ = η_r²σ_r²k. ``cpu_kernel``
    picks the segment function on NumPy arrays (see :func:`select_advance`).
    """

    eta: float | np.ndarray
    sigma: float | np.ndarray
    seed: int
    cpu_kernel: str = "auto"

    def tau(self, step) -> np.ndarray:
        return tau_of_step(step, self.eta, self.sigma)

    def key(self) -> dict:
        return {
            "algorithm": "label_noise",
            "eta": _number_or_list(self.eta),
            "sigma": _number_or_list(self.sigma),
            "seed": int(self.seed),
        }

    def segments(self, xp, act, X, y, w, replicas: np.ndarray, dtype: str) -> tuple[Segment, str]:
        seg, kernel = select_advance(
            xp, act, dtype, self.cpu_kernel, shape=(w.shape[0], X.shape[1], X.shape[0])
        )
        eta, sigma, seed = self.eta, self.sigma, self.seed

        def run_segment(th, al, k0: int, c: int, loss_bound: float, diverged_step):
            return seg(xp, act, th, X, y, w, eta, sigma, seed, replicas, k0, c, al, loss_bound, diverged_step)

        return run_segment, kernel


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
    seed: int,
    cpu_kernel: str = "auto",
    **runner: Any,
) -> SGDResult:
    """Run label-noise SGD (:class:`LabelNoise`) on every replica with :func:`simbias.ensemble.run`
    (``runner``: its keyword arguments: steps, record_steps, dtype, checkpoint, ...)."""
    rule = LabelNoise(eta=eta, sigma=sigma, seed=seed, cpu_kernel=cpu_kernel)
    return ensemble.run(xp, act, rule, theta0, X, y, w, **runner)


def _number_or_list(v):
    """η or σ as the checkpoint records it: a float, or a list for one value per replica."""
    a = np.asarray(v, dtype=float)
    return float(a) if a.ndim == 0 else a.tolist()


CPU_KERNELS = ("auto", "numba", "numpy")


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
