"""The limiting flow dθ/dτ = −∇_M F on the zero-loss manifold M (paper eq. 3).

Each replica continues from SGD's last iterate:

1. Newton (Gauss–Newton) retraction onto M; if Newton cannot start or does not
   converge, gradient flow on L first (Lemma 11), then Newton.
2. The flow, integrated with SciPy's BDF (implicit, variable order and step,
   error-controlled): the early phase is fast and the late phase slow, so the
   step grows by orders of magnitude (docs/math.md, "The flow on M").
   Between record times the iterate is retracted back onto M, so the recorded
   loss stays at round-off.
3. Stop once ‖∇_M F‖ ≤ tol, or when the τ budget is spent.

A replica whose gradient is small but whose F stays above F* near a zero
pre-activation (φ'(0) = 0 for ν = 0) is reported as stalled, never as converged.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import solve_ivp

from . import model

log = logging.getLogger(__name__)


@dataclass
class FlowResult:
    tau: np.ndarray  # (T,) flow-time offsets of the records (from the flow's start)
    theta: np.ndarray  # (T, m, d), NaN from the record after the replica stopped
    loss: np.ndarray
    sharpness: np.ndarray
    grad_norm: np.ndarray
    theta_end: np.ndarray  # (m, d), the state where the flow stopped
    tau_end: float  # offset at which the flow stopped (between records when it met tol)
    grad_norm_end: float
    tau_eps: float  # offset after which ‖∇_M F‖ ≤ eps holds for good (NaN: never)
    retraction: str  # "newton" | "gradient_flow+newton" | "failed"
    status: str
    nfev: int = 0
    notes: list[str] = field(default_factory=list)


def retract(act, theta: np.ndarray, X, y, w, tol: float = 1e-13) -> tuple[np.ndarray, str]:
    """Bring one replica (m, d) onto M: Newton first, gradient flow on L (Lemma 11) if needed."""
    th, ok = model.newton_retract(np, act, theta[None], X, y, w, tol=tol)
    if bool(ok[0]):
        return th[0], "newton"
    shape = theta.shape

    def grad_flow(t, v):
        return -model.grad_loss(np, act, v.reshape((1,) + shape), X, y, w).ravel()

    def small_loss(t, v):
        return float(model.loss(np, act, v.reshape((1,) + shape), X, y, w)[0]) - 1e-8

    small_loss.terminal = True
    sol = solve_ivp(
        grad_flow, (0.0, 1e6), theta.ravel(), method="LSODA", events=small_loss, rtol=1e-8, atol=1e-12
    )
    th, ok = model.newton_retract(np, act, sol.y[:, -1].reshape((1,) + shape), X, y, w, tol=tol)
    return th[0], ("gradient_flow+newton" if bool(ok[0]) else "failed")


def record_offsets(tau_max: float, records: int, first: float = 1e-4) -> np.ndarray:
    """Log-spaced flow-time offsets in [first, tau_max], with 0 in front."""
    return np.concatenate([[0.0], np.logspace(np.log10(first), np.log10(tau_max), records - 1)])


def run_flow(
    act,
    theta_start: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    *,
    tol: float = 1e-10,
    tau_max: float = 1e6,
    records: int = 80,
    eps: float = 1e-6,
    z_star: np.ndarray | None = None,
    F_star: float | None = None,
    rtol: float = 1e-8,
    atol: float = 1e-11,
) -> FlowResult:
    """Integrate one replica's flow from SGD's last iterate (shape (m, d))."""
    shape = theta_start.shape
    offsets = record_offsets(tau_max, records)
    T = offsets.size
    rec = {
        "theta": np.full((T,) + shape, np.nan),
        "loss": np.full(T, np.nan),
        "sharpness": np.full(T, np.nan),
        "grad_norm": np.full(T, np.nan),
    }
    theta, how = retract(act, theta_start, X, y, w)
    if how == "failed":
        return FlowResult(
            offsets,
            **rec,
            theta_end=theta,
            tau_end=0.0,
            grad_norm_end=np.nan,
            tau_eps=np.nan,
            retraction=how,
            status="retraction_failed",
        )

    def gnorm(th: np.ndarray) -> float:
        return float(model.norm(np, model.riemannian_grad(np, act, th[None], X, w))[0])

    def store(i: int, th: np.ndarray) -> float:
        g = gnorm(th)
        rec["theta"][i] = th
        rec["loss"][i] = float(model.loss(np, act, th[None], X, y, w)[0])
        rec["sharpness"][i] = float(model.sharpness(np, act, th[None], X, w)[0])
        rec["grad_norm"][i] = g
        return g

    def fun(t, v):
        return model.flow_velocity(np, act, v.reshape((1,) + shape), X, y, w).ravel()

    def jac(t, v):
        """Forward-difference Jacobian, all m·d columns in one batched evaluation."""
        h = np.sqrt(np.finfo(float).eps) * np.maximum(1.0, np.abs(v))
        pts = v[None, :] + np.diag(h)
        f_all = model.flow_velocity(np, act, np.vstack([v[None], pts]).reshape((-1,) + shape), X, y, w)
        f_all = f_all.reshape(f_all.shape[0], -1)
        return ((f_all[1:] - f_all[0]) / h[:, None]).T

    def at_tol(t, v):
        return np.log(gnorm(v.reshape(shape)) / tol)

    def eps_down(t, v):
        return np.log(gnorm(v.reshape(shape)) / eps)

    def eps_up(t, v):
        return eps_down(t, v)

    at_tol.terminal = True
    at_tol.direction = -1
    eps_down.direction = -1
    eps_up.direction = 1

    g = store(0, theta)
    # tau_eps: the offset after which ‖∇_M F‖ ≤ eps held (None while it is above eps)
    tau_eps: float | None = 0.0 if g <= eps else None
    tau_now, nfev, status = 0.0, 0, "tau_budget_exhausted"
    i = 0
    if g <= tol:
        status = "converged"
    while status != "converged" and i + 1 < T:
        sol = solve_ivp(
            fun,
            (tau_now, offsets[i + 1]),
            theta.ravel(),
            method="BDF",
            jac=jac,
            events=(at_tol, eps_down, eps_up),
            rtol=rtol,
            atol=atol,
        )
        nfev += sol.nfev
        if sol.status == -1:
            status = "integration_failed"
            log.warning("BDF failed: %s", sol.message)
            break
        crossings = [(t, -1) for t in sol.t_events[1]] + [(t, 1) for t in sol.t_events[2]]
        for t, direction in sorted(crossings):
            tau_eps = float(t) if direction < 0 else None
        theta, _ = model.newton_retract(np, act, sol.y[:, -1].reshape((1,) + shape), X, y, w)
        theta = theta[0]
        tau_now = float(sol.t[-1])
        i += 1
        if sol.status == 1 and sol.t_events[0].size:  # reached tol between records: stop here
            if gnorm(theta) <= tol * 1.01:
                status = "converged"
        else:
            store(i, theta)
    g_end = gnorm(theta)
    if g_end > eps:
        tau_eps = None
    notes = []
    if z_star is not None and F_star is not None:
        Z = theta @ X.T
        F_end = float(model.sharpness(np, act, theta[None], X, w)[0])
        gap = F_end - F_star
        if gap > 1e-8 * max(1.0, abs(F_star)):
            near_zero = float(np.min(np.abs(Z)))
            if near_zero < 1e-3 and act.rho1 == 0:
                status = "stalled_near_zero_preactivation"
                notes.append(f"min|z| = {near_zero:.2e} with φ'(0) = 0; F − F* = {gap:.3e}")
            elif status == "converged":
                status = "stationary_not_at_target"
                notes.append(f"‖∇_M F‖ ≤ tol but F − F* = {gap:.3e}")
    return FlowResult(
        tau=offsets,
        **rec,
        theta_end=theta,
        tau_end=tau_now,
        grad_norm_end=g_end,
        tau_eps=np.nan if tau_eps is None else tau_eps,
        retraction=how,
        status=status,
        nfev=nfev,
        notes=notes,
    )


def _flow_task(args) -> tuple[FlowResult | None, float]:
    """One replica's flow (a process-pool task): (result or None if θ is not finite, seconds)."""
    act, theta, X, y, w, kw = args
    t0 = time.monotonic()
    if not np.isfinite(theta).all():
        return None, 0.0
    return run_flow(act, theta, X, y, w, **kw), time.monotonic() - t0


def _one_blas_thread():
    """Cap BLAS at one thread: the flow's matrices (m·d ≤ a few hundred) only lose from more."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def thread_budget() -> int:
    """Processes a stage may use: OMP_NUM_THREADS (Snakemake sets it to the rule's threads), else 1."""
    v = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(v) if v.isdigit() and int(v) > 0 else 1


def run_flows(
    act,
    thetas: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    *,
    workers: int = 1,
    on_result: Callable[[int, FlowResult | None, float], None] | None = None,
    **kw,
) -> list[FlowResult | None]:
    """:func:`run_flow` for every replica of ``thetas`` (R, m, d); None where θ is not finite.

    Replicas are independent and each runs exactly as :func:`run_flow` alone, so
    ``workers`` > 1 (a pool of forked processes, one replica per task) gives the same
    results as ``workers = 1``, in replica order. BLAS runs on one thread per process.
    ``on_result(r, result, seconds)`` is called in replica order as results come in.
    """
    tasks = [(act, th, X, y, w, kw) for th in thetas]
    n_finite = sum(bool(np.isfinite(th).all()) for th in thetas)
    workers = max(1, min(int(workers), n_finite))
    if workers > 1 and "fork" not in multiprocessing.get_all_start_methods():
        log.info("no fork start method here: running the flow's replicas one after another")
        workers = 1
    results: list[FlowResult | None] = []
    with _one_blas_thread():  # set before forking, so the workers inherit it
        if workers == 1:
            outs = map(_flow_task, tasks)
            pool = None
        else:
            pool = multiprocessing.get_context("fork").Pool(workers)
            outs = pool.imap(_flow_task, tasks, chunksize=1)
        try:
            for r, (res, secs) in enumerate(outs):
                results.append(res)
                if on_result is not None:
                    on_result(r, res, secs)
        finally:
            if pool is not None:
                pool.close()
                pool.join()
    return results
