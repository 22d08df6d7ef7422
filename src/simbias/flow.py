"""The limiting flow dθ/dτ = −∇_M F on the zero-loss manifold M (paper eq. 3).

Each replica continues from SGD's last iterate:

1. Newton (Gauss–Newton) retraction onto M; if Newton cannot start or does not
   converge, gradient flow on L first (Lemma 11), then Newton.
2. The flow, integrated by BDF (implicit, variable order and step, error-controlled):
   the early phase is fast and the late phase slow (the slowest rate is set by
   μ = λ_min(XXᵀ), Theorem 3), so the step grows by orders of magnitude. It runs in
   the reduced coordinates of :mod:`simbias.flow_field` (m × rank X unknowns) with an
   analytic Jacobian: SUNDIALS CVODE with dense solves for small systems, SciPy's BDF
   with Woodbury solves for large ones (docs/performance.md; docs/math.md, "The flow
   on M"). At every record time the iterate is retracted onto M (Newton) before it is
   stored, so the recorded loss stays at round-off.
3. Stop once ‖∇_M F‖ ≤ tol, or when the τ budget is spent.

:mod:`simbias.flow_pool` runs many replicas' flows in worker processes.

A replica whose gradient is small but whose F stays above F* near a zero
pre-activation (φ'(0) = 0 for ν = 0) is reported as stalled, never as converged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import solve_ivp
from scipy.optimize import brentq

from . import flow_field, model

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
    integrator: str = ""  # "cvode" | "bdf" (run_flow), "dense" (flow_reference)


def gradient_flow_budget(size: int) -> int:
    """Right-hand-side evaluations the gradient flow of :func:`retract` may spend on a replica of
    ``size`` entries: about 500 suffice from the hand-over of a regime that works; from a start
    far from M (a loss of 1e30 and more) LSODA otherwise crawls on for minutes to hours."""
    return 50_000 + 20 * size


class _BudgetSpent(Exception):
    pass


def retract(act, theta: np.ndarray, X, y, w, tol: float = 1e-13) -> tuple[np.ndarray, str]:
    """Bring one replica (m, d) onto M: Newton first, gradient flow on L (Lemma 11) if needed.

    The gradient flow stops after :func:`gradient_flow_budget` evaluations: the retraction then
    fails (a warning says so) rather than run without end."""
    th, ok = model.newton_retract(np, act, theta[None], X, y, w, tol=tol)
    if bool(ok[0]):
        return th[0], "newton"
    shape = theta.shape
    budget, calls = gradient_flow_budget(theta.size), [0]

    def grad_flow(t, v):
        calls[0] += 1
        if calls[0] > budget:
            raise _BudgetSpent
        return -model.grad_loss(np, act, v.reshape((1,) + shape), X, y, w).ravel()

    def small_loss(t, v):
        return float(model.loss(np, act, v.reshape((1,) + shape), X, y, w)[0]) - 1e-8

    small_loss.terminal = True
    try:
        sol = solve_ivp(
            grad_flow, (0.0, 1e6), theta.ravel(), method="LSODA", events=small_loss, rtol=1e-8, atol=1e-12
        )
    except _BudgetSpent:
        log.warning(
            "retraction onto M failed: the gradient flow on L spent its %d evaluations "
            "(loss %.3g at the start)",
            budget,
            float(model.loss(np, act, theta[None], X, y, w)[0]),
        )
        return theta, "failed"
    th, ok = model.newton_retract(np, act, sol.y[:, -1].reshape((1,) + shape), X, y, w, tol=tol)
    return th[0], ("gradient_flow+newton" if bool(ok[0]) else "failed")


def record_offsets(tau_max: float, records: int, first: float = 1e-4) -> np.ndarray:
    """Log-spaced flow-time offsets in [first, tau_max], with 0 in front."""
    return np.concatenate([[0.0], np.logspace(np.log10(first), np.log10(tau_max), records - 1)])


def empty_records(T: int, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """NaN-filled per-record arrays of one replica."""
    return {
        "theta": np.full((T,) + shape, np.nan),
        "loss": np.full(T, np.nan),
        "sharpness": np.full(T, np.nan),
        "grad_norm": np.full(T, np.nan),
    }


def start(act, theta_start, X, y, w, tau_max: float, records: int):
    """Record times, empty records and the retracted start: (offsets, rec, θ, how, result if it failed)."""
    offsets = record_offsets(tau_max, records)
    rec = empty_records(offsets.size, theta_start.shape)
    theta, how = retract(act, theta_start, X, y, w)
    failed = None
    if how == "failed":
        failed = FlowResult(
            offsets,
            **rec,
            theta_end=theta,
            tau_end=0.0,
            grad_norm_end=np.nan,
            tau_eps=np.nan,
            retraction=how,
            status="retraction_failed",
        )
    return offsets, rec, theta, how, failed


def finish(act, theta, X, w, offsets, rec, how, status, tau_end, g_end, tau_eps, nfev, eps, z_star, F_star):
    """The FlowResult of a finished flow; a small gradient with F above F* is a stall near z = 0
    (φ'(0) = 0) or a stationary point off target, never "converged"."""
    status, notes = _verdict(act, theta, X, w, status, z_star, F_star)
    return FlowResult(
        tau=offsets,
        **rec,
        theta_end=theta,
        tau_end=tau_end,
        grad_norm_end=g_end,
        tau_eps=np.nan if tau_eps is None or g_end > eps else tau_eps,
        retraction=how,
        status=status,
        nfev=nfev,
        notes=notes,
    )


def _verdict(act, theta: np.ndarray, X, w, status: str, z_star, F_star) -> tuple[str, list[str]]:
    notes: list[str] = []
    if z_star is None or F_star is None:
        return status, notes
    F_end = float(model.sharpness(np, act, theta[None], X, w)[0])
    gap = F_end - F_star
    if gap > 1e-8 * max(1.0, abs(F_star)):
        near_zero = float(np.min(np.abs(theta @ X.T)))
        if near_zero < 1e-3 and act.rho1 == 0:
            status = "stalled_near_zero_preactivation"
            notes.append(f"min|z| = {near_zero:.2e} with φ'(0) = 0; F − F* = {gap:.3e}")
        elif status == "converged":
            status = "stationary_not_at_target"
            notes.append(f"‖∇_M F‖ ≤ tol but F − F* = {gap:.3e}")
    return status, notes


CVODE_MAX_UNKNOWNS = 160
"""Largest m·rank(X) for which ``integrator="auto"`` picks CVODE with a dense Jacobian;
above it the dense LU, O((m·r)³), costs more than SciPy's per-step overhead that CVODE
saves, and StructuredBDF's Woodbury solves win (measured: docs/performance.md)."""

INTEGRATORS = ("auto", "cvode", "bdf")
STOP_SLACK = 1.01
"""At a crossing of tol the state is retracted onto M; ‖∇_M F‖ ≤ STOP_SLACK·tol there is
converged (the 1 % absorbs the root-finding and the retraction)."""
CVODE_TOL_SCALE = 0.01
"""CVODE runs at rtol and atol times this. Its error test is looser than SciPy's BDF at the
same tolerances: against a tight reference (rtol = 1e-11) CVODE at rtol = 1e-8 reached
‖∇_M F‖ = 1e-10 up to 2.6× late in τ, its records' ‖∇_M F‖ off by up to 27 %; at 1e-10 it
is within 4 % and 0.2 %, closer than SciPy's BDF at 1e-8 (docs/performance.md)."""


def choose_integrator(unknowns: int, integrator: str = "auto") -> str:
    """``"cvode"`` or ``"bdf"`` for a flow of ``unknowns`` = m·rank(X) reduced coordinates."""
    if integrator not in INTEGRATORS:
        raise ValueError(f"flow integrator must be one of {INTEGRATORS}, not {integrator!r}")
    if integrator == "auto":
        return "cvode" if unknowns <= CVODE_MAX_UNKNOWNS else "bdf"
    return integrator


@dataclass
class _Replica:
    """One replica's flow in reduced coordinates: what both integrator drivers share."""

    act: object
    X: np.ndarray
    y: np.ndarray
    w: np.ndarray
    red: flow_field.Reduction
    perp: np.ndarray  # θ^⊥, never moves
    prob: flow_field.Problem
    offsets: np.ndarray
    rec: dict[str, np.ndarray]

    @property
    def shape(self) -> tuple[int, int]:
        return (self.w.size, self.red.r)

    def gnorm(self, a: np.ndarray) -> float:
        return self.prob.grad_norm(a.reshape(self.shape))

    def on_m(self, a: np.ndarray) -> np.ndarray:
        """Newton retraction onto M (in reduced coordinates)."""
        return self.prob.retract(a.reshape(self.shape))

    def store(self, i: int, a: np.ndarray) -> None:
        th = self.red.expand(a, self.perp)
        self.rec["theta"][i] = th
        self.rec["loss"][i] = float(model.loss(np, self.act, th[None], self.X, self.y, self.w)[0])
        self.rec["sharpness"][i] = float(model.sharpness(np, self.act, th[None], self.X, self.w)[0])
        self.rec["grad_norm"][i] = self.gnorm(a)


@dataclass
class _End:
    """Where a driver stopped: the state (on M), its offset, the status, τ_ε, f-evaluations."""

    A: np.ndarray
    tau: float
    status: str
    tau_eps: float | None
    nfev: int


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
    integrator: str = "auto",
) -> FlowResult:
    """Integrate one replica's flow from SGD's last iterate (shape (m, d)).

    In the reduced coordinates of :mod:`simbias.flow_field` (m × rank X unknowns), with
    the analytic Jacobian, by one of two BDF integrators with the same tolerances
    (``integrator``; ``"auto"`` chooses by size, :func:`choose_integrator`):

    - ``"cvode"``: SUNDIALS CVODE (BDF, orders 1–5) through scikit-sundae, its step loop
      compiled, with the dense analytic Jacobian: for small m·r, where SciPy's per-step
      Python bookkeeping costs more than the arithmetic;
    - ``"bdf"``: :class:`simbias.flow_field.StructuredBDF`, SciPy's BDF with Woodbury
      solves, O(m·r³ + n³) per factorisation: for large m·r.

    At each record time the integrator's interpolant is retracted onto M (Newton) and
    stored. The crossings of ‖∇_M F‖ through ``eps`` and ``tol`` are located on the
    interpolant (CVODE's root finding; Brent's method for SciPy's BDF).
    """
    offsets, rec, theta, how, failed = start(act, theta_start, X, y, w, tau_max, records)
    if failed is not None:
        return failed
    red = flow_field.Reduction.of(X)
    A0, perp = red.reduce(theta)
    rp = _Replica(act, X, y, w, red, perp, flow_field.Problem(act, red.B, y, w), offsets, rec)
    which = choose_integrator(A0.size, integrator)
    g = rp.gnorm(A0)
    rp.store(0, A0)
    # tau_eps: the offset after which ‖∇_M F‖ ≤ eps held (None while it is above eps)
    tau_eps: float | None = 0.0 if g <= eps else None
    if g <= tol:
        end = _End(A0, 0.0, "converged", tau_eps, 0)
    elif which == "cvode":
        end = _drive_cvode(rp, A0, tol, eps, tau_eps, rtol, atol)
    else:
        end = _drive_bdf(rp, A0, g, tol, eps, tau_eps, rtol, atol)
    res = finish(
        act,
        red.expand(end.A, perp),
        X,
        w,
        offsets,
        rec,
        how,
        end.status,
        end.tau,
        rp.gnorm(end.A),
        end.tau_eps,
        end.nfev,
        eps,
        z_star,
        F_star,
    )
    res.integrator = which
    return res


def _drive_cvode(
    rp: _Replica, A: np.ndarray, tol: float, eps: float, tau_eps, rtol: float, atol: float
) -> _End:
    """CVODE from A to ‖∇_M F‖ = tol or the last record: one call per record interval, stopping
    at the roots of log(‖∇_M F‖/eps) (either way) and log(‖∇_M F‖/tol) (downwards)."""
    from sksundae.cvode import CVODE

    shape, prob, offsets = rp.shape, rp.prob, rp.offsets
    log_eps, log_tol = float(np.log(eps)), float(np.log(tol))

    rhs, gnorm = prob.flat_callbacks()  # compiled where prob is: one call each

    def jac(t, v, vp, JJ):
        JJ[:, :] = flow_field.FlowJacobian(prob, flow_field.field(prob, v.reshape(shape))).dense()

    def levels(t, v, out):
        lg = np.log(gnorm(v))
        out[0] = lg - log_eps
        out[1] = lg - log_tol

    levels.terminal = [False, False]  # every root returns from step(); we decide what stops
    levels.direction = [0, -1]
    solver = CVODE(
        rhs,
        method="BDF",
        rtol=rtol * CVODE_TOL_SCALE,
        atol=atol * CVODE_TOL_SCALE,
        linsolver="dense",
        jacfn=jac,
        eventsfn=levels,
        num_events=2,
        max_num_steps=1_000_000,
    )
    solver.init_step(0.0, A.ravel())
    T, i, seen = offsets.size, 0, 0
    while True:
        out = solver.step(offsets[i + 1], tstop=offsets[-1])
        if not out.success:
            log.warning("CVODE failed at τ = %.4g: %s", out.t, out.message)
            return _End(rp.on_m(out.y), float(out.t), "integration_failed", tau_eps, out.nfev)
        roots = out.i_events[seen:] if out.i_events is not None else ()
        seen += len(roots)
        for k in roots:
            if k[0]:  # ‖∇_M F‖ crossed eps: down (−1) starts τ_ε, up (+1) cancels it
                tau_eps = float(out.t) if k[0] < 0 else None
            if k[1]:  # ‖∇_M F‖ fell to tol: stop here if it holds on M
                A = rp.on_m(out.y)
                if rp.gnorm(A) <= tol * STOP_SLACK:
                    return _End(A, float(out.t), "converged", tau_eps, out.nfev)
        if len(roots):
            continue  # a root before the record: go on to the same record time
        i += 1
        A = rp.on_m(out.y)
        rp.store(i, A)
        # Off M by the integration error, ‖∇_M F‖ can read below tol where on M it is not
        # (the root's test then fails) and stay there: a record on M below tol stops it.
        if rp.rec["grad_norm"][i] <= tol:
            return _End(A, float(out.t), "converged", tau_eps, out.nfev)
        if i + 1 == T:
            return _End(A, float(out.t), "tau_budget_exhausted", tau_eps, out.nfev)


def _drive_bdf(
    rp: _Replica, A: np.ndarray, g: float, tol: float, eps: float, tau_eps, rtol: float, atol: float
) -> _End:
    """StructuredBDF from A: ‖∇_M F‖ is checked after every step, its crossings of ``eps``
    and ``tol`` located on the step's interpolant with Brent's method."""
    shape, prob, offsets, T = rp.shape, rp.prob, rp.offsets, rp.offsets.size

    def fun(t, v):
        return prob.velocity(v.reshape(shape)).ravel()

    def jac(t, v):
        return flow_field.FlowJacobian(prob, flow_field.field(prob, v.reshape(shape)))

    def crossing(sol, level: float, lo: float, hi: float) -> float:
        """Where ‖∇_M F‖ = level inside the step [lo, hi] (hi if it does not change sides there)."""

        def f(t: float) -> float:
            return float(np.log(rp.gnorm(sol(t)) / level))

        if f(lo) * f(hi) > 0:
            return hi
        return float(brentq(f, lo, hi, xtol=4e-16 * max(1.0, hi)))

    def store_until(i: int, t: float, sol) -> int:
        """Store the records with offsets ≤ t from the step's interpolant, retracted onto M."""
        while i + 1 < T and offsets[i + 1] <= t:
            i += 1
            rp.store(i, rp.on_m(sol(offsets[i])))
        return i

    bdf = flow_field.StructuredBDF(fun, 0.0, A.ravel(), offsets[-1], jac=jac, rtol=rtol, atol=atol)
    i = 0
    while True:
        bdf.step()
        if bdf.status == "failed":
            log.warning("BDF failed at τ = %.4g", bdf.t)
            return _End(rp.on_m(bdf.y), float(bdf.t), "integration_failed", tau_eps, bdf.nfev)  # last step
        t0, t1 = bdf.t_old, bdf.t
        g_new = rp.gnorm(bdf.y)
        crossed = (g_new <= eps) != (g <= eps)
        recording = i + 1 < T and offsets[i + 1] <= t1
        sol = bdf.dense_output() if (g_new <= tol or crossed or recording) else None
        if crossed:
            tau_eps = crossing(sol, eps, t0, t1) if g_new <= eps else None
        g = g_new
        if g_new <= tol:
            t_stop = crossing(sol, tol, t0, t1)
            i = store_until(i, t_stop, sol)
            A = rp.on_m(sol(t_stop))
            if rp.gnorm(A) <= tol * STOP_SLACK:  # met tol between records: stop here
                return _End(A, t_stop, "converged", tau_eps, bdf.nfev)
        i = store_until(i, t1, sol)
        if bdf.status == "finished":
            return _End(rp.on_m(bdf.y), t1, "tau_budget_exhausted", tau_eps, bdf.nfev)
