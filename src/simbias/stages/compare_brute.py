"""The comparison's brute-force columns: SGD continued past the hand-over against the flow
at the same τ (docs/theory.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .. import analysis, model, storage, theory

# The brute-force tolerance, in standard deviations of SGD's stationary spread around M.
BRUTE_SDS = 5.0


def _flow_at(fl: xr.Dataset, tau: float) -> np.ndarray:
    """Each replica's flow state at flow time τ: its end state if it stopped by then, else its
    last record at or before τ (records are log-spaced; F only decreases along the flow)."""
    th = fl["theta_end"].values.copy()
    i = max(int(np.searchsorted(fl["tau"].values, tau, side="right")) - 1, 0)
    running = fl["tau_end"].values > tau
    th[running] = fl["theta"].values[running, i]
    return th


def brute_force_columns(cfg, act, X, w, fl, brute_path, z_star, F_star) -> tuple[dict, float]:
    """SGD continued past the hand-over against the flow at the same τ (docs/theory.md).

    The tolerance is BRUTE_SDS standard deviations of SGD's stationary spread around the
    flow's point (theory.sgd_stationary_spread): max|Δz| ≤ BRUTE_SDS·max_ji sd(z_ji) and
    |ΔF| ≤ BRUTE_SDS·sd(F).
    """
    bf = storage.open_dataset(brute_path)
    tau = float(bf["tau"].values[-1])
    th_s = bf["theta"].values[:, -1]
    th_f = _flow_at(fl, tau)
    R = th_s.shape[0]
    F_s = model.sharpness(np, act, th_s, X, w)
    F_f = model.sharpness(np, act, th_f, X, w)
    z_tol, F_tol, L_pred = (np.full(R, np.nan) for _ in range(3))
    for r in range(R):
        if np.isfinite(th_f[r]).all():
            sp = theory.sgd_stationary_spread(act, th_f[r], X, w, cfg["eta"], cfg["sigma"])
            z_tol[r], F_tol[r], L_pred[r] = BRUTE_SDS * np.max(sp.z_std), BRUTE_SDS * sp.F_std, sp.loss_mean
    z_gap = np.max(np.abs((th_s - th_f) @ X.T), axis=(-2, -1))
    F_gap = F_s - F_f
    shift = 0.0 if F_star is None else F_star

    def zd(th):
        return np.full(R, np.nan) if z_star is None else np.max(np.abs(th @ X.T - z_star), axis=(-2, -1))

    within = pd.array(
        [
            pd.NA if np.isnan(a) or np.isnan(t) else bool(a <= t and abs(b) <= u)
            for a, b, t, u in zip(z_gap, F_gap, z_tol, F_tol, strict=True)
        ],
        dtype="boolean",
    )
    return {
        "brute_tau": tau,
        "brute_z_dist_sgd": zd(th_s),
        "brute_z_dist_flow": zd(th_f),
        "brute_sharpness_gap_sgd": F_s - shift,
        "brute_sharpness_gap_flow": F_f - shift,
        "brute_z_gap": z_gap,
        "brute_z_tol": z_tol,
        "brute_sharpness_diff": F_gap,
        "brute_sharpness_tol": F_tol,
        "brute_within_tol": within,
        "brute_loss_sgd": bf["loss"].values[:, -1],
        "brute_loss_stationary": L_pred,
        "brute_feature_rank_sgd": analysis.numerical_rank(bf["feature_sv"].values[:, -1]),
    }, tau
