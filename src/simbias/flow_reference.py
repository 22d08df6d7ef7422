"""The flow integrator before the structured one: the reference for tests and benchmarks.

SciPy's BDF on the full θ (m·d unknowns) with a forward-difference Jacobian
((m·d)² memory, (m·d)³ per LU), restarted after every record with a fresh Jacobian.
:func:`simbias.flow.run_flow` integrates the same flow with the same tolerances in
reduced coordinates with an analytic Jacobian; tests pin the two together and
``benchmarks/flow_scaling.py`` times them side by side.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.integrate import solve_ivp

from . import model
from .flow import FlowResult, finish, start

log = logging.getLogger(__name__)


def run_flow_dense(act, theta_start, X, y, w, *, tol=1e-10, tau_max=1e6, records=80, eps=1e-6, z_star=None,
                   F_star=None, rtol=1e-8, atol=1e-11) -> FlowResult:  # fmt: skip
    """The dense integrator :func:`simbias.flow.run_flow` replaced: BDF on θ (m·d coordinates)
    with a forward-difference Jacobian and dense LU, restarted after each record."""
    shape = theta_start.shape
    offsets, rec, theta, how, failed = start(act, theta_start, X, y, w, tau_max, records)
    if failed is not None:
        return failed
    T = offsets.size

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
    res = finish(
        act, theta, X, w, offsets, rec, how, status, tau_now, gnorm(theta), tau_eps, nfev, eps, z_star, F_star
    )
    res.integrator = "dense"
    return res
