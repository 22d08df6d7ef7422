"""Stage compare: comparison.nc/.csv, one row per replica against Theorems 2 and 3 and
Lemma 6 (docs/theory.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import analysis, model, storage, theory
from ..activations import make_activation
from ..tables import comparison_title, csv_to_html
from .common import NO_FLOW, NO_FLOW_REASON, START_NOT_FINITE, open_inputs, stage_attrs
from .compare_brute import brute_force_columns


def compare(
    regime: str,
    cfg: dict,
    data_path: str,
    sgd_path: str,
    flow_path: str,
    out_nc: str,
    out_csv: str,
    brute_path: str | None = None,
) -> None:
    """comparison.nc/.csv: one row per replica against Theorems 2 and 3 and Lemma 6, and, with
    ``brute_path`` (brute_force.nc), SGD continued past the hand-over against the flow."""
    data, X, y, w = open_inputs(data_path)
    sgd = storage.open_dataset(sgd_path)
    fl = storage.open_dataset(flow_path)
    act = make_activation(cfg["activation"])
    eps, z_tol = cfg["theory"]["epsilon"], cfg["theory"]["z_tol"]
    z_star, F_star, app2 = theory.theorem2_target(act, X, y, w)
    app3 = theory.bounds_applicability(X, act, w)
    if fl.attrs.get("flow") == NO_FLOW_REASON:  # GD: Theorem 3 is about a flow that does not run
        app3 = theory.Applicability(False, f"Theorem 3: {NO_FLOW_REASON}")
    scale = theory.weight_scale(w) or 1.0  # c² for constant w_j = c (exact rescaling)
    c = theory.constants(act, X)
    R = sgd.sizes["replica"]
    th_sgd = sgd["theta"].values[:, -1]
    th_flow = fl["theta_end"].values
    th_flow0 = fl["theta"].values[:, 0]

    def zdist(th: np.ndarray) -> np.ndarray:
        if z_star is None:
            return np.full(R, np.nan)
        return np.max(np.abs(th @ X.T - z_star), axis=(-2, -1))

    def sharp(th: np.ndarray) -> np.ndarray:
        return model.sharpness(np, act, th, X, w)

    F0 = sharp(th_flow0)
    bounds_ok = app3.ok and z_star is not None  # (Theorem 3 applicable implies Theorem 2 is)
    nan_r = np.full(R, np.nan)
    bound = np.array([theory.grad_eps_time(F, c, eps, scale) for F in F0]) if bounds_ok else nan_r
    zbound = np.array([theory.theorem3_time(F, c, eps, scale) for F in F0]) if bounds_ok else nan_r
    gn_end = fl["grad_norm_end"].values
    tau_eps = fl["tau_eps_offset"].values
    fl_end = fl["tau_end"].values - float(fl.attrs["tau_start"])
    if bounds_ok:
        zrec = np.max(np.abs(fl["theta"].values @ X.T - z_star), axis=(-2, -1))
        # Lemma 6 at every flow record (and the end): max|z − z*| ≤ ‖∇_M F‖ / (c²√μ ϱ1ϱ2)
        l6rec = theory.lemma6_bound(fl["grad_norm"].values, c, scale)
        with np.errstate(invalid="ignore"):
            l6_all = np.all((zrec <= l6rec * (1 + 1e-9) + 1e-12) | np.isnan(zrec), axis=1)
        l6_end = theory.lemma6_bound(gn_end, c, scale)
        z_lo, z_hi = _time_below_for_good(zrec, fl["tau_offset"].values, zdist(th_flow), eps)
        holds = _bound_holds(tau_eps, tau_eps, bound, fl_end)
        zholds = _bound_holds(z_lo, z_hi, zbound, fl_end)
    else:
        l6_all = holds = zholds = [pd.NA] * R
        l6_end = z_lo = z_hi = nan_r
    status = fl["status"].values.astype(str)
    z_flow = zdist(th_flow)
    na = pd.NA
    reached = pd.array(z_flow <= z_tol if z_star is not None else [na] * R, dtype="boolean")
    arr = arrival_on_M(sgd["loss"].values, ARRIVAL_LOSS)
    df = pd.DataFrame(
        {
            "regime": regime,
            "replica": np.arange(R),
            "sgd_diverged": sgd["diverged"].values.astype(bool),
            "flow_status": status,
            "z_dist_sgd_end": zdist(th_sgd),
            "z_dist_flow_end": z_flow,
            "reached_theorem2_point": reached,
            "sharpness_sgd_end": sgd["sharpness"].values[:, -1],
            "sharpness_flow_end": sharp(th_flow),
            "sharpness_star": np.nan if F_star is None else F_star,
            "sharpness_gap": sharp(th_flow) - (np.nan if F_star is None else F_star),
            "grad_norm_end": gn_end,
            "tau_flow_start": float(fl.attrs["tau_start"]),
            "tau_eps_observed": tau_eps,
            "tau_eps_theorem3_bound": bound,
            "theorem3_bound_holds": pd.array(holds, dtype="boolean"),
            "tau_z_eps_observed": z_hi,
            "tau_z_eps_observed_after": z_lo,
            "tau_z_eps_theorem3_bound": zbound,
            "theorem3_z_bound_holds": pd.array(zholds, dtype="boolean"),
            "lemma6_bound_end": l6_end,
            "lemma6_holds_all_records": pd.array(l6_all, dtype="boolean"),
            "theorem3_weight_scale": scale if bounds_ok else np.nan,
            **_handover(
                sgd["theta"].values[:, 0],
                th_sgd,
                th_flow0,
                th_flow,
                X,
                sgd["loss"].values[:, -1],
                sgd["sharpness"].values[:, -1],
                F0,
            ),
            "feature_rank_sgd_end": analysis.numerical_rank(sgd["feature_sv"].values[:, -1]),
            "step_arrival_on_M": np.where(arr >= 0, sgd["step"].values[np.maximum(arr, 0)], -1),
            "feature_rank_arrival_on_M": np.where(
                arr >= 0,
                analysis.numerical_rank(sgd["feature_sv"].values[np.arange(R), np.maximum(arr, 0)]),
                -1,
            ),
            "feature_rank_flow_end": analysis.numerical_rank(analysis.singular_values_nan(th_flow @ X.T)),
            "cluster_count_sgd_end": analysis.cluster_count(th_sgd @ X.T),
            "cluster_count_flow_end": analysis.cluster_count(th_flow @ X.T),
            "theorem2_applicable": app2.ok,
            "theorem3_applicable": app3.ok,
            "not_applicable_reason": "; ".join(dict.fromkeys(r for r in (app2.reason, app3.reason) if r)),
        }
    )
    if brute_path:
        cols, _ = brute_force_columns(cfg, act, X, w, fl, brute_path, z_star, F_star)
        for k, v in cols.items():
            df[k] = v
    df["flag"] = [_flag(row, z_star is not None, z_tol) for row in df.itertuples()]
    if z_star is not None:
        df["z_tol"] = z_tol
    nc = df.set_index("replica").drop(columns=["regime"])
    for col in nc.columns:  # nullable booleans -> 1.0 / 0.0 / NaN (not applicable) in NetCDF
        if isinstance(nc[col].dtype, pd.BooleanDtype):
            nc[col] = nc[col].astype("Float64").astype(float)
    ds = storage.dataset_from_frame(nc)
    # d < n structure over time: effective rank and neuron clusters at every record
    for stage, src in (("sgd", sgd), ("flow", fl)):
        Zt = src["theta"].values @ X.T
        ds[f"feature_rank_{stage}"] = (
            ("replica", f"{stage}_record"),
            analysis.numerical_rank(src["feature_sv"].values),
        )
        ds[f"cluster_count_{stage}"] = (("replica", f"{stage}_record"), analysis.cluster_count(Zt))
        ds = ds.assign_coords({f"{stage}_tau": (f"{stage}_record", src["tau"].values)})
    ds.attrs = stage_attrs(regime, cfg, "numpy", f"{regime}: comparison with Theorems 2 and 3")
    ds.attrs.update(
        mu=c.mu,
        rho1=c.rho1,
        rho2=c.rho2,
        beta=c.beta,
        beta_paper=c.beta_paper,
        epsilon=eps,
        z_tol=z_tol,
        rank_rel_threshold=analysis.RANK_REL_THRESHOLD,
        cluster_rel_tol=analysis.CLUSTER_REL_TOL,
        theorem2_applicable=int(app2.ok),
        theorem2_reason=app2.reason,
        theorem3_applicable=int(app3.ok),
        theorem3_reason=app3.reason,
    )
    storage.write_netcdf(ds, out_nc)  # yes/no columns stay bool, as `diverged` in sgd.nc
    with storage.atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False)


def compare_group(
    regimes: list[str],
    cfgs: dict[str, dict],
    paths: dict[str, list[str]],
    brute_paths: dict[str, str],
) -> None:
    """comparison.nc, .csv and .html of several grid points in one process (:func:`compare`
    and :func:`simbias.tables.csv_to_html` for each). ``paths`` holds one list per kind
    (data, sgd, flow, nc, csv, html) in the order of ``regimes``."""
    for i, regime in enumerate(regimes):
        data, sgd, flow, nc, csv, html = (paths[k][i] for k in ("data", "sgd", "flow", "nc", "csv", "html"))
        compare(regime, cfgs[regime], data, sgd, flow, nc, csv, brute_path=brute_paths.get(regime))
        csv_to_html(csv, html, comparison_title(regime), cfgs[regime])


# A run counts as having arrived on M once its loss stays at or below this (labels are O(1)).
ARRIVAL_LOSS = 1e-12


def arrival_on_M(loss: np.ndarray, loss_tol: float) -> np.ndarray:
    """Index of the first record from which the loss stays ≤ loss_tol (-1: never)."""
    i = _first_for_good(np.isfinite(loss) & (loss <= loss_tol))
    return np.where(i < loss.shape[1], i, -1)


def _first_for_good(ok: np.ndarray) -> np.ndarray:
    """Per row of ``ok`` (R, T), the first index from which it is True to the end (T: not even
    at the last)."""
    T = ok.shape[1]
    rev = ok[:, ::-1]
    trailing = np.where(rev.all(axis=1), T, np.argmin(rev, axis=1))  # Trues at the row's end
    return T - trailing


# The hand-over counts as small when the retraction moves θ by at most this fraction of θ's
# displacement over the whole run (figures say so when the median is above it).
HANDOVER_SMALL = 0.1


def _handover(th_init, th_sgd, th_flow0, th_flow_end, X, loss_sgd, F_sgd, F_flow0) -> dict[str, np.ndarray]:
    """What the retraction onto M does at the SGD-to-flow hand-over, per replica.

    θ moves from SGD's last iterate to the flow's start (its retraction onto M). The move is
    measured against θ's displacement over the whole run, from SGD's initial θ0 to the flow's
    end: a scale that does not vanish when SGD has already converged (then the flow itself
    travels almost nothing, and a ratio to the flow's own travel blows up though the hand-over
    changes nothing). The ratio is NaN where it is undefined: a replica that diverged or whose
    flow failed (their ``flag`` says so), or one that ends exactly at θ0 though the retraction
    moved it (:func:`_flag` says so); 0 where nothing moved at all.
    """
    norm = lambda a: np.linalg.norm(a, axis=(-2, -1))  # noqa: E731
    move = norm(th_flow0 - th_sgd)
    overall = norm(th_flow_end - th_init)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(overall > 0, move / overall, np.where(move == 0, 0.0, np.nan))
    return {
        "loss_sgd_end": loss_sgd,
        "handover_theta_move": move,
        "handover_z_move": np.max(np.abs((th_flow0 - th_sgd) @ X.T), axis=(-2, -1)),
        "sharpness_handover_before": F_sgd,
        "sharpness_handover_after": F_flow0,
        "flow_theta_travel": norm(th_flow_end - th_flow0),
        "theta_displacement": overall,
        "handover_move_ratio": ratio,
    }


def _time_below_for_good(
    values: np.ndarray, tau: np.ndarray, end: np.ndarray, thr: float
) -> tuple[np.ndarray, np.ndarray]:
    """Bracket (after, at) of the flow time from which ``values`` ≤ ``thr`` held for good.

    ``values`` (R, T) at record times ``tau`` (NaN once the flow stopped), ``end`` its
    value where the flow stopped. The time lies in (after, at]: ``at`` is the first
    record from which every later record and the end are ≤ thr, ``after`` the record
    before it (0 when the flow started below). NaN, NaN where the end is above thr.
    """
    R = values.shape[0]
    lo, hi = np.full(R, np.nan), np.full(R, np.nan)
    with np.errstate(invalid="ignore"):
        first = _first_for_good(~(np.isfinite(values) & (values > thr)))
    for r in range(R):
        if not end[r] <= thr:
            continue
        i = first[r]
        if i >= tau.size:  # the last record is above: the crossing came after it
            lo[r], hi[r] = tau[-1], np.nan
            continue
        hi[r] = tau[i]
        lo[r] = tau[i - 1] if i > 0 else tau[0]
    return lo, hi


def _bound_holds(after: np.ndarray, at: np.ndarray, bound: np.ndarray, ran_to: np.ndarray) -> list:
    """True where the observed time (in (after, at]) is ≤ bound, False where it is surely above
    (after ≥ bound, or never reached though the flow ran past the bound), NA where undecided."""
    out: list = []
    for a, t, b, e in zip(after, at, bound, ran_to, strict=True):
        if np.isnan(b):
            out.append(pd.NA)
        elif np.isfinite(t):
            out.append(True if t <= b else (False if a >= b else pd.NA))
        elif np.isfinite(a):
            out.append(False if a >= b else pd.NA)
        else:
            out.append(False if e >= b else pd.NA)
    return out


def _flag(row, has_target: bool, z_tol: float) -> str:
    """Why a replica does not count as having reached the Theorem 2 point ('' when it does), or
    why its hand-over ratio is undefined though it ran normally."""
    why = _not_reached(row, has_target, z_tol)
    if not why and np.isnan(row.handover_move_ratio):
        return "hand-over ratio undefined: θ ends exactly at θ0 though the retraction moved it"
    return why


def _not_reached(row, has_target: bool, z_tol: float) -> str:
    if row.sgd_diverged:
        return "diverged during SGD"
    if row.flow_status == NO_FLOW:
        return "no flow (GD): " + (
            "did not reach the Theorem 2 point"
            if has_target and not bool(row.reached_theorem2_point)
            else "ended at its arrival point on M"
        )
    if row.flow_status == START_NOT_FINITE:
        return "not flowed: SGD's last record is not finite as stored (record_overflow in sgd.nc)"
    if row.flow_status != "converged":
        return f"flow {row.flow_status}"
    if has_target and not bool(row.reached_theorem2_point):
        return f"converged, but max|z − z*| = {row.z_dist_flow_end:.2e} > {z_tol:g}"
    return ""
