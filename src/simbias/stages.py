"""One function per pipeline stage; the Snakemake scripts only call these.

Each stage reads NetCDF, computes with the library and writes NetCDF that
follows the output contract (docs/outputs.md).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import xarray as xr

from . import analysis, model, storage, theory
from .activations import make_activation
from .backend import get_backend
from .checkpoint import SGDCheckpoint
from .config import code_version, job_config, regime_sha256
from .data import make_dataset
from .flow import run_flows, thread_budget
from .sgd import label_noise_sgd, record_schedule, tau_of_step

log = logging.getLogger(__name__)


def _attrs(regime: str, cfg: dict, backend: str, title: str) -> dict:
    return storage.attrs_for(regime, cfg, backend, cfg.get("dtype", "float64"), title)


def make_data(regime: str, cfg: dict, out: str) -> None:
    """data.nc: x, y, w and θ0 for every replica."""
    d = make_dataset(cfg)
    ds = xr.Dataset(
        {
            "x": (("sample", "feature"), d["x"]),
            "y": (("sample",), d["y"]),
            "w": (("neuron",), d["w"]),
            "theta0": (("replica", "neuron", "feature"), d["theta0"]),
        },
        coords={"replica": np.arange(cfg["replicas"])},
    )
    ds.attrs = _attrs(regime, cfg, "numpy", f"{regime}: training data and initial weights")
    ds.attrs["gram_min_eig"] = theory.gram_min_eig(d["x"])
    storage.write_netcdf(ds, out)
    log.info("%s: wrote %s (μ = λ_min(XXᵀ) = %.3g)", regime, out, ds.attrs["gram_min_eig"])


def _inputs(data_path: str):
    ds = storage.open_dataset(data_path)
    return ds, ds["x"].values, ds["y"].values, ds["w"].values


def _sv_vars(theta: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """feature_sv and weight_sv of θ (..., m, d), both padded to one 'rank' length."""
    m, d = theta.shape[-2:]
    n = X.shape[0]
    k = max(min(m, n), min(m, d))
    fsv = analysis.singular_values_nan(theta @ X.T)
    wsv = analysis.singular_values_nan(theta)
    return storage.sv_padded(fsv, k), storage.sv_padded(wsv, k)


def _largest_stable_eta(xp, act, theta0, X, y, w, cfg: dict, trial_steps: int = 2000) -> dict:
    """Estimate the largest η at which no replica diverges, when the configured η made all diverge.

    Short label-noise SGD runs (the job's own θ0, data, seeds and noise; at most
    ``trial_steps`` steps) at η/2, η/4, ... until one keeps every replica finite and
    under ``sgd.loss_bound``, then six geometric bisection steps (about 1% apart).
    It is empirical: a longer run can still diverge close to this η. For context it
    also reports where that run settled, the linear-stability limit 2/λ_max(∇²L)
    with ∇²L ≈ 2JᵀJ (exact on the zero-loss manifold M), median over replicas.
    """
    s = cfg["sgd"]
    K = int(min(s["steps"], trial_steps))
    common = dict(
        sigma=cfg["sigma"],
        steps=K,
        record_steps=np.array([0, K]),
        seed=s["seed"],
        dtype=cfg["dtype"],
        loss_bound=s["loss_bound"],
    )

    def trial(eta: float):
        quiet = logging.getLogger("simbias.sgd")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # the trials' own divergence warnings are expected
        try:
            r = label_noise_sgd(xp, act, theta0, X, y, w, eta=eta, **common)
        finally:
            quiet.setLevel(level)
        log.info(
            "stability trial: eta = %.4g, %d of %d replicas diverged", eta, r.diverged.sum(), r.diverged.size
        )
        return None if r.diverged.any() else r

    bad, ok, res = float(cfg["eta"]), None, None
    for _ in range(30):
        eta = bad / 2
        res = trial(eta)
        if res is not None:
            ok = eta
            break
        bad = eta
    if ok is None:
        return {"eta": None, "trial_steps": K, "lowest_tried": bad}
    for _ in range(6):
        mid = float(np.sqrt(ok * bad))
        r = trial(mid)
        if r is None:
            bad = mid
        else:
            ok, res = mid, r
    th = res.theta[:, -1]
    Z = model.preactivations(np, th, X)
    lam = np.linalg.eigvalsh(2.0 * model.gram_jjt(np, act, Z, X, w))[:, -1]
    with np.errstate(divide="ignore"):
        curvature_eta = float(np.median(2.0 / lam))
    return {
        "eta": ok,
        "trial_steps": K,
        "curvature_eta": curvature_eta,
        "median_loss": float(np.median(res.loss[:, -1])),
    }


def _all_diverged_message(regime: str, cfg: dict, res, initial_loss: np.ndarray, est: dict | None) -> str:
    s = cfg["sgd"]
    first, last = int(res.diverged_step.min()), int(res.diverged_step.max())
    head = (
        f"regime '{regime}': all {res.diverged.size} replicas diverged during SGD (loss non-finite or "
        f"above sgd.loss_bound = {s['loss_bound']:g}; steps {first} to {last})."
    )
    if last == 0 and np.all(np.isfinite(initial_loss)) and np.all(initial_loss > s["loss_bound"]):
        return (
            f"{head} The loss already starts above sgd.loss_bound (median {np.median(initial_loss):.3g}): "
            "raise sgd.loss_bound (or lower init.scale), eta is not the problem."
        )
    if est is None or est["eta"] is None:
        low = "" if est is None else f" (even eta = {est['lowest_tried']:.3g} diverged in a short trial)"
        return f"{head} Use a much smaller eta than {cfg['eta']:g}{low}; check the labels' and init's scale."
    e, c = est["eta"], est["curvature_eta"]
    curvature = (
        f" Where that run settled the linear-stability limit is 2/λ_max(∇²L) ≈ {c:.3g} (∇²L ≈ 2JᵀJ near "
        "the zero-loss manifold; median over replicas)."
        if np.isfinite(c)
        else ""
    )
    return (
        f"{head} Use a smaller eta than {cfg['eta']:g}: the largest stable eta is estimated at about "
        f"{e:.3g} (every replica stayed finite for {est['trial_steps']} steps at that eta, with the same "
        f"data, seeds and label noise; bisection).{curvature} A longer run can still diverge near the "
        f"limit: leave a margin, e.g. eta: {float(f'{e / 2:.2g}'):g}."
    )


def run_sgd(
    regime: str,
    cfg: dict,
    data_path: str,
    out: str,
    checkpoint_path: str | None = None,
    checkpoint_every_steps: int = 0,
    checkpoint_every_seconds: float = 0.0,
) -> None:
    """sgd.nc: label-noise SGD records on the log + linear schedule.

    With ``checkpoint_path`` the loop saves its state there every
    ``checkpoint_every_steps`` steps or ``checkpoint_every_seconds`` seconds and, when
    rerun after a kill, resumes from it; the checkpoint is deleted once sgd.nc is written.
    """
    data, X, y, w = _inputs(data_path)
    xp, backend = get_backend(cfg["backend"])
    log.info("%s: backend %s (requested %s), dtype %s", regime, backend, cfg["backend"], cfg["dtype"])
    act = make_activation(cfg["activation"])
    s = cfg["sgd"]
    steps = np.union1d(
        record_schedule(s["steps"], s["log_points"], s["linear_points"]),
        np.asarray(s.get("record_steps", []), dtype=np.int64),
    )
    ckpt = None
    if checkpoint_path:
        ckpt = SGDCheckpoint(
            checkpoint_path,
            every_steps=checkpoint_every_steps,
            every_seconds=checkpoint_every_seconds,
            fingerprint={
                "regime": regime,
                "config_sha256": regime_sha256(job_config(cfg)),
                "code": code_version("run_sgd"),
                "backend": backend,
            },
        )
    alg = cfg["algorithm"]
    t0 = time.monotonic()
    res = label_noise_sgd(
        xp,
        act,
        data["theta0"].values,
        X,
        y,
        w,
        eta=cfg["eta"],
        sigma=cfg["sigma"],
        steps=s["steps"],
        record_steps=steps,
        seed=s["seed"],
        dtype=cfg["dtype"],
        loss_bound=s["loss_bound"],
        progress=lambda msg: log.info("%s: %s", regime, msg),
        checkpoint=ckpt,
        sam_rho=alg["rho"] if alg["name"] == "one_sam" else None,
        sam_order=alg["order"],
    )
    log.info(
        "%s: %d steps x %d replicas in %.1f s%s",
        regime,
        s["steps"],
        cfg["replicas"],
        time.monotonic() - t0,
        "" if ckpt is None or ckpt.resumed_from is None else f" (resumed at step {ckpt.resumed_from})",
    )
    if res.diverged.all():
        if ckpt is not None:
            ckpt.clear(empty_parents=2)  # results/.checkpoints/{regime}/ and .checkpoints/
        est = _largest_stable_eta(xp, act, data["theta0"].values, X, y, w, cfg)
        raise RuntimeError(_all_diverged_message(regime, cfg, res, res.loss[:, 0], est))
    if res.diverged.any():
        log.warning(
            "%s: %d of %d replicas diverged (frozen; NaN records after diverged_step); "
            "flow, comparison and figures leave them out",
            regime,
            int(res.diverged.sum()),
            res.diverged.size,
        )
    k = max(res.feature_sv.shape[-1], res.weight_sv.shape[-1])
    dims = ("replica", "record")
    ds = xr.Dataset(
        {
            "theta": (dims + ("neuron", "feature"), res.theta),
            "loss": (dims, res.loss),
            "sharpness": (dims, res.sharpness),
            "feature_sv": (dims + ("rank",), storage.sv_padded(res.feature_sv, k)),
            "weight_sv": (dims + ("rank",), storage.sv_padded(res.weight_sv, k)),
            "diverged": (("replica",), res.diverged),
            "diverged_step": (("replica",), res.diverged_step),
        },
        coords={
            "replica": np.arange(res.theta.shape[0]),
            "step": ("record", res.step),
            "tau": ("record", _clock(cfg, res.step, X.shape[0])),
            "rank": np.arange(1, k + 1),
        },
    )
    ds.attrs = _attrs(regime, cfg, backend, f"{regime}: {ALGORITHM_TITLES[alg['name']]}")
    ds.attrs["algorithm"] = alg["name"]
    ds.attrs["clock"] = CLOCKS[alg["name"]]
    ds.attrs["segment_function"] = res.kernel
    if alg["name"] == "one_sam":
        ds.attrs["one_sam_order"] = alg["order"]
    storage.write_netcdf(ds, out)
    if ckpt is not None:
        ckpt.clear(empty_parents=2)  # results/.checkpoints/{regime}/ and .checkpoints/


ALGORITHM_TITLES = {
    "label_noise_sgd": "label-noise SGD",
    "gd": "gradient descent (control)",
    "one_sam": "1-SAM",
}
CLOCKS = {
    "label_noise_sgd": "tau = eta^2 sigma^2 step (Li, Wang & Arora 2021; docs/math.md)",
    "one_sam": "tau = eta rho^2 step / n (derived in simbias/sam.py)",
    "gd": "none: GD has no noise, so no drift along M at the eta^2 time scale; tau is NaN",
}


def _clock(cfg: dict, step: np.ndarray, n: int) -> np.ndarray:
    """Flow time of each step for the regime's algorithm (NaN for GD, which has no clock)."""
    alg = cfg["algorithm"]
    if alg["name"] == "one_sam":
        from .sam import tau_of_step as sam_tau

        return sam_tau(step, cfg["eta"], alg["rho"], n)
    if alg["name"] == "gd":
        return np.full(np.shape(step), np.nan)
    return tau_of_step(step, cfg["eta"], cfg["sigma"])


def _targets(act, X, y, w):
    """Theorem 2 point and F*, or (None, None, reason) when Theorem 2 does not apply."""
    app = theory.theorem2_applicability(X, act)
    if app.ok and np.any(w == 0):
        app = theory.Applicability(False, "some second-layer weight w_j = 0")
    if not app.ok:
        return None, None, app
    z = theory.target_z(act, y, w)
    return z, theory.min_sharpness(act, z, X, w), app


def run_flow_stage(regime: str, cfg: dict, data_path: str, sgd_path: str, out: str) -> None:
    """flow.nc: each replica continued from SGD's last iterate by dθ/dτ = −∇_M F."""
    data, X, y, w = _inputs(data_path)
    sgd = storage.open_dataset(sgd_path)
    act = make_activation(cfg["activation"])
    f = cfg["flow"]
    z_star, F_star, _ = _targets(act, X, y, w)
    tau0 = float(sgd["tau"].values[-1])
    if not np.isfinite(tau0):  # GD has no clock: the flow's own time starts at 0
        tau0 = 0.0
    theta_last = sgd["theta"].values[:, -1]
    workers = thread_budget()  # the rule's threads: one flow process each

    def report(r: int, res, secs: float) -> None:
        if res is None:
            log.info("%s: replica %d diverged in SGD, no flow", regime, r)
            return
        log.info(
            "%s: replica %d %s after τ = %.4g (‖∇_M F‖ = %.2e, %d f-evals, %.2f s) %s",
            regime,
            r,
            res.status,
            res.tau_end,
            res.grad_norm_end,
            res.nfev,
            secs,
            "; ".join(res.notes),
        )

    t0 = time.monotonic()
    results = run_flows(
        act,
        theta_last,
        X,
        y,
        w,
        workers=workers,
        on_result=report,
        tol=f["tol"],
        tau_max=f["tau_max"],
        records=f["records"],
        eps=cfg["theory"]["epsilon"],
        z_star=z_star,
        F_star=F_star,
    )
    n_run = sum(r is not None for r in results)
    log.info(
        "%s: flow for %d replicas in %.1f s with %d process(es) (%.2f s per replica)",
        regime,
        n_run,
        time.monotonic() - t0,
        min(workers, max(n_run, 1)),
        (time.monotonic() - t0) / max(n_run, 1),
    )
    R, (m, d) = len(results), theta_last.shape[1:]
    offsets = next(r.tau for r in results if r is not None)
    T = offsets.size
    theta = np.full((R, T, m, d), np.nan)
    per_rec = {k: np.full((R, T), np.nan) for k in ("loss", "sharpness", "grad_norm")}
    end = {k: np.full(R, np.nan) for k in ("tau_end", "grad_norm_end", "tau_eps_offset")}
    nfev = np.full(R, -1, dtype=np.int64)  # -1: no flow (the replica diverged in SGD)
    theta_end = np.full((R, m, d), np.nan)
    status = np.array(["sgd_diverged"] * R, dtype=object)
    retraction = np.array(["none"] * R, dtype=object)
    for r, res in enumerate(results):
        if res is None:
            continue
        theta[r] = res.theta
        for k in per_rec:
            per_rec[k][r] = getattr(res, k)
        theta_end[r] = res.theta_end
        end["tau_end"][r] = tau0 + res.tau_end
        end["grad_norm_end"][r] = res.grad_norm_end
        end["tau_eps_offset"][r] = res.tau_eps
        nfev[r] = res.nfev
        status[r] = res.status
        retraction[r] = res.retraction
    fsv, wsv = _sv_vars(theta, X)
    fsv_end, wsv_end = _sv_vars(theta_end, X)
    with np.errstate(invalid="ignore"):  # NaN θ_end (diverged in SGD) gives NaN
        loss_end = model.loss(np, act, theta_end, X, y, w)
    dims = ("replica", "record")
    ds = xr.Dataset(
        {
            "theta": (dims + ("neuron", "feature"), theta),
            **{k: (dims, v) for k, v in per_rec.items()},
            "feature_sv": (dims + ("rank",), fsv),
            "weight_sv": (dims + ("rank",), wsv),
            "theta_end": (("replica", "neuron", "feature"), theta_end),
            # the end state beside θ_end: the records stop at tau_max, replicas stop earlier
            "loss_end": (("replica",), loss_end),
            "sharpness_end": (("replica",), model.sharpness(np, act, theta_end, X, w)),
            "feature_sv_end": (("replica", "rank"), fsv_end),
            "weight_sv_end": (("replica", "rank"), wsv_end),
            **{k: (("replica",), v) for k, v in end.items()},
            "nfev": (("replica",), nfev),
            "status": (("replica",), status.astype(str)),
            "retraction": (("replica",), retraction.astype(str)),
        },
        coords={
            "replica": np.arange(R),
            "tau": ("record", tau0 + offsets),
            "tau_offset": ("record", offsets),
            "rank": np.arange(1, fsv.shape[-1] + 1),
        },
    )
    ds["tau_end"].attrs.update(long_name="flow time at which the flow stopped (SGD's clock continued)")
    ds["tau_eps_offset"].attrs.update(
        long_name="flow time after the flow's start beyond which ‖∇_M F‖ ≤ epsilon held (NaN: never)"
    )
    ds["status"].attrs.update(long_name="how the flow ended: converged, stalled_near_zero_preactivation, ...")
    ds["tau_offset"].attrs.update(long_name="flow time since the flow's start (SGD's last iterate)")
    ds.attrs = _attrs(regime, cfg, "numpy", f"{regime}: Riemannian flow of the sharpness on M")
    ds.attrs["tau_start"] = tau0
    storage.write_netcdf(ds, out)


def compare(
    regime: str, cfg: dict, data_path: str, sgd_path: str, flow_path: str, out_nc: str, out_csv: str
) -> None:
    """comparison.nc/.csv: one row per replica against Theorems 2 and 3 and Lemma 6."""
    data, X, y, w = _inputs(data_path)
    sgd = storage.open_dataset(sgd_path)
    fl = storage.open_dataset(flow_path)
    act = make_activation(cfg["activation"])
    eps, z_tol = cfg["theory"]["epsilon"], cfg["theory"]["z_tol"]
    z_star, F_star, app2 = _targets(act, X, y, w)
    app3 = theory.theorem3_applicability(X, act)
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
    bound = np.array([theory.theorem3_time(F, c, eps) if app3.ok else np.nan for F in F0])
    gn_end = fl["grad_norm_end"].values
    # Lemma 6 at every flow record (and the end): max|z − z*| ≤ ‖∇_M F‖ / (√μ ϱ1ϱ2)
    if app3.ok and z_star is not None:
        zrec = np.max(np.abs(fl["theta"].values @ X.T - z_star), axis=(-2, -1))
        l6rec = theory.lemma6_bound(fl["grad_norm"].values, c)
        with np.errstate(invalid="ignore"):
            l6_all = np.all((zrec <= l6rec * (1 + 1e-9) + 1e-12) | np.isnan(zrec), axis=1)
        l6_end = theory.lemma6_bound(gn_end, c)
    else:
        l6_all = None
        l6_end = np.full(R, np.nan)
    status = fl["status"].values.astype(str)
    z_flow = zdist(th_flow)
    na = pd.NA
    reached = pd.array(z_flow <= z_tol if z_star is not None else [na] * R, dtype="boolean")
    tau_eps = fl["tau_eps_offset"].values
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
            "theorem3_bound_holds": pd.array(tau_eps <= bound if app3.ok else [na] * R, dtype="boolean"),
            "lemma6_bound_end": l6_end,
            "lemma6_holds_all_records": pd.array(
                l6_all if app3.ok and z_star is not None else [na] * R, dtype="boolean"
            ),
            "feature_rank_sgd_end": analysis.numerical_rank(sgd["feature_sv"].values[:, -1]),
            "feature_rank_flow_end": analysis.numerical_rank(analysis.singular_values_nan(th_flow @ X.T)),
            "cluster_count_sgd_end": analysis.cluster_count(th_sgd @ X.T),
            "cluster_count_flow_end": analysis.cluster_count(th_flow @ X.T),
            "theorem2_applicable": app2.ok,
            "theorem3_applicable": app3.ok,
            "not_applicable_reason": "; ".join(dict.fromkeys(r for r in (app2.reason, app3.reason) if r)),
        }
    )
    df["flag"] = [_flag(row, z_star is not None, z_tol) for row in df.itertuples()]
    if z_star is not None:
        df["z_tol"] = z_tol
    nc = df.set_index("replica").drop(columns=["regime"])
    for col in nc.columns:  # nullable booleans -> 1.0 / 0.0 / NaN (not applicable) in NetCDF
        if isinstance(nc[col].dtype, pd.BooleanDtype):
            nc[col] = nc[col].astype("Float64").astype(float)
    ds = xr.Dataset.from_dataframe(nc)
    # d < n structure over time: effective rank and neuron clusters at every record
    for stage, src in (("sgd", sgd), ("flow", fl)):
        Zt = src["theta"].values @ X.T
        ds[f"feature_rank_{stage}"] = (
            ("replica", f"{stage}_record"),
            analysis.numerical_rank(src["feature_sv"].values),
        )
        ds[f"cluster_count_{stage}"] = (("replica", f"{stage}_record"), analysis.cluster_count(Zt))
        ds = ds.assign_coords({f"{stage}_tau": (f"{stage}_record", src["tau"].values)})
    ds.attrs = _attrs(regime, cfg, "numpy", f"{regime}: comparison with Theorems 2 and 3")
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


def _flag(row, has_target: bool, z_tol: float) -> str:
    """Why a replica does not count as having reached the Theorem 2 point ('' when it does)."""
    if row.sgd_diverged:
        return "diverged during SGD"
    if row.flow_status != "converged":
        return f"flow {row.flow_status}"
    if has_target and not bool(row.reached_theorem2_point):
        return f"converged, but max|z − z*| = {row.z_dist_flow_end:.2e} > {z_tol:g}"
    return ""


def summarize(csv_paths: list[str], out: str) -> None:
    """results/summary.csv: one row per regime."""
    rows = []
    for p in csv_paths:
        # text columns as text: an all-empty column would otherwise be read as float NaN
        df = pd.read_csv(p, dtype={"flag": str, "not_applicable_reason": str})
        ok = ~df["sgd_diverged"]
        rows.append(
            {
                "regime": df["regime"].iloc[0],
                "replicas": len(df),
                "sgd_diverged": int(df["sgd_diverged"].sum()),
                "flow_converged": int((df["flow_status"] == "converged").sum()),
                "reached_theorem2_point": _count_or_na(df["reached_theorem2_point"]),
                "flagged": int(df["flag"].fillna("").astype(bool).sum()),
                "median_z_dist_sgd_end": df.loc[ok, "z_dist_sgd_end"].median(),
                "median_z_dist_flow_end": df.loc[ok, "z_dist_flow_end"].median(),
                "median_sharpness_gap": df.loc[ok, "sharpness_gap"].median(),
                "median_tau_eps_observed": df.loc[ok, "tau_eps_observed"].median(),
                "median_tau_eps_theorem3_bound": df.loc[ok, "tau_eps_theorem3_bound"].median(),
                "theorem3_bound_holds_all": _all_or_na(df.loc[ok, "theorem3_bound_holds"]),
                "lemma6_holds_all": _all_or_na(df.loc[ok, "lemma6_holds_all_records"]),
                "feature_rank_sgd_end_median": df.loc[ok, "feature_rank_sgd_end"].median(),
                "feature_rank_flow_end_median": df.loc[ok, "feature_rank_flow_end"].median(),
                "cluster_count_flow_end_median": df.loc[ok, "cluster_count_flow_end"].median(),
                "theorem2_applicable": bool(df["theorem2_applicable"].iloc[0]),
                "theorem3_applicable": bool(df["theorem3_applicable"].iloc[0]),
                "not_applicable_reason": df["not_applicable_reason"].fillna("").iloc[0],
            }
        )
    with storage.atomic_path(out) as tmp:  # medians to 6 significant digits: comparison.nc has them all
        pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.6g")


def _count_or_na(col: pd.Series):
    """Count of True, or 'n/a' when the column is empty (theory not applicable)."""
    col = col.dropna()
    return "n/a" if col.empty else int(col.astype(bool).sum())


def _all_or_na(col: pd.Series):
    col = col.dropna()
    return "n/a" if col.empty else bool(col.astype(bool).all())
