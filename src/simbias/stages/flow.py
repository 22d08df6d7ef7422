"""Stage run_flow: flow.nc, each replica continued from SGD's last iterate by the sharpness
flow on M; a sweep's grid points that differ only in η and σ share one pool of workers."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import xarray as xr

from .. import analysis, model, storage, theory
from ..activations import make_activation
from ..checkpoint import fingerprint
from ..code_version import code_version
from ..config_job import job_config, regime_sha256
from ..flow import record_offsets
from ..flow_checkpoint import FlowCheckpoint
from ..flow_pool import run_flows, thread_budget
from .common import (
    NO_FLOW,
    NO_FLOW_REASON,
    START_NOT_FINITE,
    check_same_data,
    fused_key,
    open_inputs,
    stage_attrs,
    write_nc,
)

log = logging.getLogger(__name__)


def run_flow_stage(
    regime: str, cfg: dict, data_path: str, sgd_path: str, out: str, checkpoint_path: str | None = None
) -> None:
    """flow.nc: each replica continued from SGD's last iterate by dθ/dτ = −∇_M F.

    With ``checkpoint_path`` (a folder) every finished replica is saved there at once; a
    rerun after a kill runs only the others and writes the same flow.nc. The folder is
    deleted once flow.nc is written.
    """
    job = FlowJob(regime, cfg, data_path, sgd_path, checkpoint_path)
    if job.no_flow(out):
        return
    t0 = time.monotonic()
    results = job.run(job.theta_last, job.ckpt, job.report)
    job.log_time(len(results) - results.count(None), time.monotonic() - t0)
    job.write(results, out)


class FlowJob:
    """One regime's flow stage: its inputs and settings, then flow.nc from the flows' results."""

    def __init__(self, regime: str, cfg: dict, data_path: str, sgd_path: str, checkpoint_path: str | None):
        self.regime, self.cfg = regime, cfg
        _, self.X, self.y, self.w = open_inputs(data_path)
        self.sgd = storage.open_dataset(sgd_path)
        self.act = make_activation(cfg["activation"])
        f = cfg["flow"]
        self.z_star, self.F_star, _ = theory.theorem2_target(self.act, self.X, self.y, self.w)
        tau0 = float(self.sgd["tau"].values[-1])
        self.tau0 = tau0 if np.isfinite(tau0) else 0.0  # GD has no clock: the flow's own time starts at 0
        # SGD's last record; NaN where the flow cannot start (start_status says why)
        self.why_not = start_status(self.sgd)
        self.theta_last = np.where(
            (self.why_not == "")[:, None, None], self.sgd["theta"].values[:, -1], np.nan
        )
        self.settings = dict(
            tol=f["tol"], tau_max=f["tau_max"], records=f["records"], eps=cfg["theory"]["epsilon"]
        )
        self.ckpt = None
        if checkpoint_path and cfg["algorithm"]["name"] != "gd":
            self.ckpt = FlowCheckpoint(
                checkpoint_path,
                regime=regime,
                config_sha256=regime_sha256(job_config(cfg)),
                code=code_version("run_flow"),
                inputs=fingerprint(
                    theta=self.theta_last, X=self.X, y=self.y, w=self.w, tau0=self.tau0, **self.settings
                ),
            )

    def no_flow(self, out: str) -> bool:
        """GD has no flow: write its flow.nc (:func:`_no_flow`) and say so."""
        if self.cfg["algorithm"]["name"] != "gd":
            return False
        _no_flow(self.regime, self.cfg, self.sgd, self.X, self.w, out)
        return True

    def report(self, r: int, res, secs: float) -> None:
        if res is None:
            log.log(
                logging.INFO if self.why_not[r] == "sgd_diverged" else logging.WARNING,
                "%s: replica %d not flowed: %s",
                self.regime,
                r,
                START_REASONS[self.why_not[r]],
            )
            return
        log.info(
            "%s: replica %d %s after τ = %.4g (‖∇_M F‖ = %.2e, %s, %d f-evals, %.2f s) %s",
            self.regime,
            r,
            res.status,
            res.tau_end,
            res.grad_norm_end,
            res.integrator,
            res.nfev,
            secs,
            "; ".join(res.notes),
        )

    def run(self, thetas: np.ndarray, ckpt, on_result) -> list:
        """The flows from ``thetas`` (this job's problem and settings), one process per thread."""
        return run_flows(
            self.act,
            thetas,
            self.X,
            self.y,
            self.w,
            workers=thread_budget(),  # the rule's threads: one flow process each
            on_result=on_result,
            checkpoint=ckpt,
            **self.settings,
            z_star=self.z_star,
            F_star=self.F_star,
        )

    def log_time(self, n_run: int, secs: float) -> None:
        log.info(
            "%s: flow for %d replicas in %.1f s with %d process(es) (%.2f s per replica)",
            self.regime,
            n_run,
            secs,
            min(thread_budget(), max(n_run, 1)),
            secs / max(n_run, 1),
        )

    def write(self, results: list, out: str) -> None:
        _write_flow(
            self.regime, self.cfg, self.act, self.X, self.y, self.w, self.tau0, results, out, self.why_not
        )
        if self.ckpt is not None:
            self.ckpt.clear()


class _Checkpoints:
    """Several points' flow checkpoints seen as one over their replicas laid end to end (R each)."""

    def __init__(self, ckpts: list, R: int):
        self.ckpts, self.R = ckpts, R

    def load(self) -> dict:
        return {
            p * self.R + r: res
            for p, c in enumerate(self.ckpts)
            if c is not None
            for r, res in c.load().items()
        }

    def save(self, r: int, res) -> None:
        if (c := self.ckpts[r // self.R]) is not None:
            c.save(r % self.R, res)


def run_flow_group(
    regimes: list[str],
    cfgs: dict[str, dict],
    data_paths: list[str],
    sgd_paths: list[str],
    outs: list[str],
    checkpoint_dir: str | None = None,
) -> None:
    """flow.nc of several grid points in one process. The flows of points that differ only in
    η and σ (the same problem and flow settings) share one pool of worker processes, their
    replicas laid end to end; each replica's flow is the one :func:`run_flow_stage` runs for
    it, and each point keeps its checkpoint folder ``checkpoint_dir/{point}/run_flow``."""
    parts: dict[str, list] = {}
    for i, regime in enumerate(regimes):
        ckpt = None if checkpoint_dir is None else str(Path(checkpoint_dir) / regime / "run_flow")
        job = FlowJob(regime, cfgs[regime], data_paths[i], sgd_paths[i], ckpt)
        if not job.no_flow(outs[i]):
            parts.setdefault(fused_key(job.cfg) or f"alone:{i}", []).append((job, outs[i]))
    for part in parts.values():
        jobs = [j for j, _ in part]
        first, R = jobs[0], jobs[0].theta_last.shape[0]
        check_same_data([j.regime for j in jobs], [(j.X, j.y, j.w) for j in jobs])

        def report(r: int, res, secs: float, jobs=jobs, R=R) -> None:
            jobs[r // R].report(r % R, res, secs)

        t0 = time.monotonic()
        thetas = np.concatenate([j.theta_last for j in jobs])
        results = first.run(thetas, _Checkpoints([j.ckpt for j in jobs], R), report)
        log.info(
            "%d grid points from %s: flow for %d replicas in one pool, %.1f s",
            len(jobs),
            first.regime,
            len(results) - results.count(None),
            time.monotonic() - t0,
        )
        for p, (job, out) in enumerate(part):
            job.write(results[p * R : (p + 1) * R], out)


def _write_flow(
    regime: str, cfg: dict, act, X, y, w, tau0: float, results: list, out: str, why_not: np.ndarray
) -> None:
    """flow.nc from one regime's flow results (None for a replica not flowed: ``why_not``)."""
    f = cfg["flow"]
    R, m, d = len(results), cfg["m"], cfg["d"]
    # every replica diverged in SGD: no flow ran; the records stay NaN on the usual τ grid
    offsets = next((r.tau for r in results if r is not None), record_offsets(f["tau_max"], f["records"]))
    T = offsets.size
    theta = np.full((R, T, m, d), np.nan)
    per_rec = {k: np.full((R, T), np.nan) for k in ("loss", "sharpness", "grad_norm")}
    end = {k: np.full(R, np.nan) for k in ("tau_end", "grad_norm_end", "tau_eps_offset")}
    nfev = np.full(R, -1, dtype=np.int64)  # -1: no flow (the replica diverged in SGD)
    theta_end = np.full((R, m, d), np.nan)
    status = np.where(why_not == "", "sgd_diverged", why_not).astype(object)
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
    ds.attrs = stage_attrs(regime, cfg, "numpy", f"{regime}: Riemannian flow of the sharpness on M")
    ds.attrs["tau_start"] = tau0
    write_nc(ds, cfg, out)


def _no_flow(regime: str, cfg: dict, sgd: xr.Dataset, X: np.ndarray, w: np.ndarray, out: str) -> None:
    """flow.nc for GD: no flow. One record (offset 0) holding GD's last iterate, unchanged.

    Without label noise there is no drift along M, so continuing GD with the sharpness
    flow would show a bias GD does not have. The file keeps the flow's layout so the
    comparison and the figures read GD's end as the run's end.
    """
    act = make_activation(cfg["activation"])
    th = sgd["theta"].values[:, -1]
    R = th.shape[0]
    finite = np.isfinite(th).all(axis=(1, 2))
    grad = np.full(R, np.nan)
    grad[finite] = model.norm(np, model.riemannian_grad(np, act, th[finite], X, w))
    fsv, wsv = _sv_vars(th[:, None], X)
    dims = ("replica", "record")
    ds = xr.Dataset(
        {
            "theta": (dims + ("neuron", "feature"), th[:, None]),
            "loss": (dims, sgd["loss"].values[:, -1:]),
            "sharpness": (dims, sgd["sharpness"].values[:, -1:]),
            "grad_norm": (dims, grad[:, None]),
            "feature_sv": (dims + ("rank",), fsv),
            "weight_sv": (dims + ("rank",), wsv),
            "theta_end": (("replica", "neuron", "feature"), th),
            "loss_end": (("replica",), sgd["loss"].values[:, -1]),
            "sharpness_end": (("replica",), sgd["sharpness"].values[:, -1]),
            "feature_sv_end": (("replica", "rank"), fsv[:, 0]),
            "weight_sv_end": (("replica", "rank"), wsv[:, 0]),
            "tau_end": (("replica",), np.zeros(R)),
            "grad_norm_end": (("replica",), grad),
            "tau_eps_offset": (("replica",), np.full(R, np.nan)),
            "nfev": (("replica",), np.full(R, -1, dtype=np.int64)),  # -1: no flow
            "status": (("replica",), np.where(finite, NO_FLOW, start_status(sgd)).astype(str)),
            "retraction": (("replica",), np.array(["none"] * R)),
        },
        coords={
            "replica": np.arange(R),
            "tau": ("record", [0.0]),
            "tau_offset": ("record", [0.0]),
            "rank": np.arange(1, fsv.shape[-1] + 1),
        },
    )
    ds.attrs = stage_attrs(regime, cfg, "numpy", f"{regime}: no flow ({NO_FLOW_REASON})")
    ds.attrs["tau_start"] = 0.0
    ds.attrs["flow"] = NO_FLOW_REASON
    write_nc(ds, cfg, out)
    log.info("%s: %s; flow.nc holds GD's last iterate", regime, NO_FLOW_REASON)


START_REASONS = {
    "sgd_diverged": "it diverged in SGD",
    START_NOT_FINITE: (
        "SGD's last record (θ or its loss) is not finite as stored: a value beyond record_dtype's "
        "range (record_overflow in sgd.nc); record_dtype: float64 keeps it"
    ),
}


def start_status(sgd: xr.Dataset) -> np.ndarray:
    """Per replica, why the flow cannot start from SGD's last record ('' where it can):
    ``sgd_diverged``, or ``start_not_finite`` where θ or the loss stored there is ±inf or NaN
    without a divergence (a value beyond ``record_dtype``'s range; flowing from a point that
    far from M would not end)."""
    ok = np.isfinite(sgd["theta"].values[:, -1]).all(axis=(1, 2)) & np.isfinite(sgd["loss"].values[:, -1])
    diverged = sgd["diverged"].values.astype(bool)
    return np.where(ok, "", np.where(diverged, "sgd_diverged", START_NOT_FINITE))


def _sv_vars(theta: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """feature_sv and weight_sv of θ (..., m, d), both padded to one 'rank' length."""
    m, d = theta.shape[-2:]
    n = X.shape[0]
    k = max(min(m, n), min(m, d))
    fsv = analysis.singular_values_nan(theta @ X.T)
    wsv = analysis.singular_values_nan(theta)
    return storage.sv_padded(fsv, k), storage.sv_padded(wsv, k)
