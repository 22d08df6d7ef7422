"""One function per pipeline stage; the Snakemake scripts only call these.

Each stage reads NetCDF, computes with the library and writes NetCDF that
follows the output contract (docs/outputs.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from . import analysis, model, storage, theory
from .activations import make_activation
from .backend import get_backend
from .checkpoint import SGDCheckpoint, fingerprint
from .config import code_version, job_config, regime_sha256
from .data import make_dataset
from .flow import record_offsets, run_flows, thread_budget
from .flow_checkpoint import FlowCheckpoint
from .sgd import SGDResult, label_noise_sgd, record_schedule, tau_of_step

log = logging.getLogger(__name__)


def _attrs(regime: str, cfg: dict, backend: str, title: str, kernel: str = "numpy") -> dict:
    """Global attributes, with ``backend`` and ``kernel`` (the code that computed the file)."""
    return {**storage.attrs_for(regime, cfg, backend, cfg.get("dtype", "float64"), title), "kernel": kernel}


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
    A hard link to the finished sgd.nc stays beside it (see :func:`_finished_sgd`), so a
    kill after sgd.nc is in place but before Snakemake records the job does not redo SGD.
    """
    finished = _finished_sgd(checkpoint_path, regime, cfg, data_path)
    if finished is not None and finished.reuse(out):
        return
    xp, backend = _sgd_backend(regime, cfg)
    data, X, y, w = _inputs(data_path)
    ckpt = _sgd_checkpoint(
        checkpoint_path,
        checkpoint_every_steps,
        checkpoint_every_seconds,
        {
            "regime": regime,
            "config_sha256": regime_sha256(job_config(cfg)),
            "code": code_version("run_sgd"),
            "backend": backend,
        },
    )
    t0 = time.monotonic()
    res = _label_noise_sgd(xp, cfg, data["theta0"].values, X, y, w, cfg["eta"], cfg["sigma"], regime, ckpt)
    log.info(
        "%s: %d steps x %d replicas in %.1f s%s",
        regime,
        cfg["sgd"]["steps"],
        cfg["replicas"],
        time.monotonic() - t0,
        "" if ckpt is None or ckpt.resumed_from is None else f" (resumed at step {ckpt.resumed_from})",
    )
    _write_sgd(regime, cfg, res, xp, backend, data["theta0"].values, X, y, w, out, finished)
    if ckpt is not None:
        ckpt.clear(empty_parents=2)  # results/.checkpoints/{regime}/ and .checkpoints/
    if pause := os.environ.get("SIMBIAS_FAULT_PAUSE_AFTER_SGD_WRITE"):  # fault tests only
        time.sleep(float(pause))


def _write_nc(ds: xr.Dataset, cfg: dict, out: str) -> None:
    """A stage's NetCDF file, its trajectories stored in the regime's ``record_dtype``."""
    storage.write_netcdf(ds, out, record_dtype=cfg.get("record_dtype", "float64"))


def _sgd_backend(regime: str, cfg: dict):
    """The array module and backend name; `backend: cupy` without a usable GPU stops here."""
    try:
        xp, backend = get_backend(cfg["backend"])
    except RuntimeError as exc:
        raise RuntimeError(
            f"regime {regime!r}, field 'backend': {exc}; use backend: auto (the CPU fast path "
            "where there is no GPU) or numpy"
        ) from None
    log.info("%s: backend %s (requested %s), dtype %s", regime, backend, cfg["backend"], cfg["dtype"])
    return xp, backend


def _sgd_checkpoint(path: str | None, every_steps: int, every_seconds: float, key: dict):
    if not path:
        return None
    return SGDCheckpoint(path, every_steps=every_steps, every_seconds=every_seconds, fingerprint=key)


def _label_noise_sgd(xp, cfg: dict, theta0, X, y, w, eta, sigma, label: str, ckpt, replicas=None):
    """The regime's SGD (or 1-SAM) run from θ0, with η and σ numbers or one per replica."""
    s, alg = cfg["sgd"], cfg["algorithm"]
    steps = np.union1d(
        record_schedule(s["steps"], s["log_points"], s["linear_points"]),
        np.asarray(s.get("record_steps", []), dtype=np.int64),
    )
    return label_noise_sgd(
        xp,
        make_activation(cfg["activation"]),
        theta0,
        X,
        y,
        w,
        eta=eta,
        sigma=sigma,
        steps=s["steps"],
        record_steps=steps,
        seed=s["seed"],
        dtype=cfg["dtype"],
        loss_bound=s["loss_bound"],
        progress=lambda msg: log.info("%s: %s", label, msg),
        checkpoint=ckpt,
        sam_rho=alg["rho"] if alg["name"] == "one_sam" else None,
        sam_order=alg["order"],
        replicas=replicas,
    )


def _write_sgd(regime: str, cfg: dict, res, xp, backend: str, theta0, X, y, w, out: str, finished) -> None:
    """sgd.nc from one regime's records: the last-step divergence rule, why a regime failed."""
    s, alg = cfg["sgd"], cfg["algorithm"]
    flag_final_divergence(res, s["loss_bound"], s["steps"])
    failure = ""
    if res.diverged.all():  # the regime failed: say why, but do not block the other regimes' aggregates
        est = _largest_stable_eta(xp, make_activation(cfg["activation"]), theta0, X, y, w, cfg)
        failure = _all_diverged_message(regime, cfg, res, res.loss[:, 0], est)
        log.error("%s", failure)
    elif res.diverged.any():
        log.warning(
            "%s: %d of %d replicas diverged (frozen; NaN records after diverged_step); "
            "flow, comparison and figures leave them out",
            regime,
            int(res.diverged.sum()),
            res.diverged.size,
        )
    ds = _sgd_dataset(res, cfg, X.shape[0])
    ds.attrs = _attrs(regime, cfg, backend, f"{regime}: {ALGORITHM_TITLES[alg['name']]}", res.kernel)
    ds.attrs["algorithm"] = alg["name"]
    ds.attrs["clock"] = CLOCKS[alg["name"]]
    ds.attrs["failure"] = failure  # why the regime failed ('' when it did not)
    if alg["name"] == "one_sam":
        ds.attrs["one_sam_order"] = alg["order"]
    _write_nc(ds, cfg, out)
    if finished is not None:
        finished.keep(out)


def _fused_key(cfg: dict) -> str | None:
    """What grid points must share to run as one SGD call (all but η and σ); None: never fused
    (1-SAM keeps its own loop per point)."""
    if cfg["algorithm"]["name"] == "one_sam":
        return None
    rest = {k: v for k, v in job_config(cfg).items() if k not in ("eta", "sigma", "sweep_of", "description")}
    return json.dumps(rest, sort_keys=True)


def _check_same_data(regimes: list[str], arrays: list[tuple]) -> None:
    """Grid points run as one must hold the same (X, y, w): their data config is one."""
    for regime, arr in zip(regimes[1:], arrays[1:], strict=True):
        if not all(np.array_equal(a, b) for a, b in zip(arrays[0], arr, strict=True)):
            raise RuntimeError(
                f"{regime}: data.nc differs from {regimes[0]}'s though their data config is one"
            )


def point_replica_ids(points: int, replicas: int) -> np.ndarray:
    """Noise-stream ids of P grid points × R replicas run as one: each point's replicas are
    0..R−1, the ids its own run would use (docs/noise_stream.md)."""
    return np.tile(np.arange(replicas, dtype=np.int64), points)


def run_sgd_group(
    regimes: list[str],
    cfgs: dict[str, dict],
    data_paths: list[str],
    outs: list[str],
    checkpoint_path: str | None = None,
    checkpoint_every_steps: int = 0,
    checkpoint_every_seconds: float = 0.0,
) -> None:
    """sgd.nc of several grid points of a sweep, in one process.

    Points that share everything but η and σ (same problem, data, θ0 distribution, seeds,
    steps, records, dtype) run as ONE call of the SGD loop: P points × R replicas, each
    replica with its own η and σ and the noise-stream id it has in its point's own run
    (:func:`point_replica_ids`), so every point's sgd.nc holds the numbers :func:`run_sgd`
    writes for it alone. Other points (1-SAM, or a different problem) run one after another.
    ``checkpoint_path`` names a folder: one checkpoint per fused call, one finished link per point.
    """
    todo: dict[str | None, list[int]] = {}
    finished = {}
    ckpt_dir = Path(checkpoint_path) if checkpoint_path else None
    for i, regime in enumerate(regimes):
        cfg = cfgs[regime]
        fin = None
        if ckpt_dir is not None:
            fin = _finished_sgd(str(ckpt_dir / regime / "run_sgd.npz"), regime, cfg, data_paths[i])
            if fin.reuse(outs[i]):
                continue
        finished[i] = fin
        todo.setdefault(_fused_key(cfg) or f"alone:{i}", []).append(i)
    for idx in todo.values():
        if len(idx) == 1:
            for i in idx:
                run_sgd(
                    regimes[i],
                    cfgs[regimes[i]],
                    data_paths[i],
                    outs[i],
                    None if ckpt_dir is None else str(ckpt_dir / regimes[i] / "run_sgd.npz"),
                    checkpoint_every_steps,
                    checkpoint_every_seconds,
                )
            continue
        _run_fused(
            [regimes[i] for i in idx],
            cfgs,
            [data_paths[i] for i in idx],
            [outs[i] for i in idx],
            [finished[i] for i in idx],
            ckpt_dir,
            checkpoint_every_steps,
            checkpoint_every_seconds,
        )


def make_data_group(regimes: list[str], cfgs: dict[str, dict], outs: list[str]) -> None:
    """data.nc of several grid points in one process (:func:`make_data` for each)."""
    for regime, out in zip(regimes, outs, strict=True):
        make_data(regime, cfgs[regime], out)


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
        job = _FlowJob(regime, cfgs[regime], data_paths[i], sgd_paths[i], ckpt)
        if not job.no_flow(outs[i]):
            parts.setdefault(_fused_key(job.cfg) or f"alone:{i}", []).append((job, outs[i]))
    for part in parts.values():
        jobs = [j for j, _ in part]
        first, R = jobs[0], jobs[0].theta_last.shape[0]
        _check_same_data([j.regime for j in jobs], [(j.X, j.y, j.w) for j in jobs])

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


def compare_group(
    regimes: list[str],
    cfgs: dict[str, dict],
    paths: dict[str, list[str]],
    brute_paths: dict[str, str],
) -> None:
    """comparison.nc, .csv and .html of several grid points in one process (:func:`compare`
    and :func:`simbias.tables.csv_to_html` for each). ``paths`` holds one list per kind
    (data, sgd, flow, nc, csv, html) in the order of ``regimes``."""
    from .tables import csv_to_html

    for i, regime in enumerate(regimes):
        data, sgd, flow, nc, csv, html = (paths[k][i] for k in ("data", "sgd", "flow", "nc", "csv", "html"))
        compare(regime, cfgs[regime], data, sgd, flow, nc, csv, brute_path=brute_paths.get(regime))
        csv_to_html(csv, html, f"{regime}/comparison")


def _run_fused(regimes, cfgs, data_paths, outs, finished, ckpt_dir, every_steps, every_seconds) -> None:
    """One SGD call for grid points that differ only in η and σ (see :func:`run_sgd_group`)."""
    first = cfgs[regimes[0]]
    label = f"{regimes[0]} and {len(regimes) - 1} more grid points"
    xp, backend = _sgd_backend(regimes[0], first)
    inputs = [_inputs(p) for p in data_paths]
    _, X, y, w = inputs[0]
    _check_same_data(regimes, [(X2, y2, w2) for _, X2, y2, w2 in inputs])
    theta0 = np.concatenate([d["theta0"].values for d, *_ in inputs])
    R, P = first["replicas"], len(regimes)
    eta = np.repeat([float(cfgs[r]["eta"]) for r in regimes], R)
    sigma = np.repeat([float(cfgs[r]["sigma"]) for r in regimes], R)
    key = {
        "regimes": regimes,
        "config_sha256": regime_sha256([job_config(cfgs[r]) for r in regimes]),
        "code": code_version("run_sgd"),
        "backend": backend,
    }
    name = hashlib.sha256(json.dumps(regimes).encode()).hexdigest()[:16]
    ckpt = _sgd_checkpoint(
        None if ckpt_dir is None else str(ckpt_dir / f"fused_{name}.npz"), every_steps, every_seconds, key
    )
    t0 = time.monotonic()
    res = _label_noise_sgd(xp, first, theta0, X, y, w, eta, sigma, label, ckpt, point_replica_ids(P, R))
    log.info(
        "%s: %d steps x %d replicas (%d points x %d) in one call, %.1f s%s",
        label,
        first["sgd"]["steps"],
        P * R,
        P,
        R,
        time.monotonic() - t0,
        "" if ckpt is None or ckpt.resumed_from is None else f" (resumed at step {ckpt.resumed_from})",
    )
    for p, regime in enumerate(regimes):
        part = slice(p * R, (p + 1) * R)
        one = SGDResult(
            **{
                f.name: (v[part] if isinstance(v, np.ndarray) and f.name != "step" else v)
                for f in dataclasses.fields(res)
                for v in [getattr(res, f.name)]
            }
        )
        _write_sgd(regime, cfgs[regime], one, xp, backend, theta0[part], X, y, w, outs[p], finished[p])
    if ckpt is not None:
        ckpt.clear(empty_parents=1)


class _FinishedSGD:
    """A hard link to a finished sgd.nc, next to the checkpoint, with what it was made from.

    Snakemake records a job as complete only after its process exits; a kill in between
    leaves a complete sgd.nc that Snakemake calls incomplete and deletes before the rerun
    (``--rerun-incomplete``). The link (no extra disk space) survives that, and a rerun of
    the same regime, config, code, backend and data.nc reuses it instead of redoing SGD.
    """

    def __init__(self, path: Path, key: dict):
        self.path, self.meta, self.key = path, path.with_suffix(".json"), key

    def reuse(self, out: str) -> bool:
        try:
            ok = self.path.exists() and json.loads(self.meta.read_text()) == self.key
        except (OSError, ValueError):
            ok = False
        if not ok:
            self.clear()
            return False
        with storage.atomic_path(out) as tmp:
            shutil.copyfile(self.path, tmp)
        log.info(
            "%s: reusing %s, written by an earlier run of this exact job (killed before "
            "Snakemake recorded it)",
            self.key["regime"],
            self.path,
        )
        return True

    def keep(self, out: str) -> None:
        self.clear()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(out, self.path)
        except OSError:  # no hard links on this file system: a copy
            shutil.copyfile(out, self.path)
        self.meta.write_text(json.dumps(self.key))

    def clear(self) -> None:
        self.meta.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)


def _finished_sgd(checkpoint_path: str | None, regime: str, cfg: dict, data_path: str):
    if not checkpoint_path:
        return None
    key = {
        "regime": regime,
        "config_sha256": regime_sha256(job_config(cfg)),
        "code": code_version("run_sgd"),
        "data_sha256": hashlib.sha256(Path(data_path).read_bytes()).hexdigest(),
    }
    return _FinishedSGD(Path(checkpoint_path).with_name("finished_sgd.nc"), key)


def flag_final_divergence(res, loss_bound: float, steps: int) -> None:
    """Apply the divergence rule once more after the last step (and with 0 steps).

    The loop checks each replica's loss before every step, so a replica that blows up in
    the last step (or starts above the bound when there are no steps) would otherwise end
    with ``diverged = 0``. Such a replica is flagged as diverged at step ``steps``, and its
    record there is set to NaN, like every record from a replica's ``diverged_step`` on.
    """
    last = int(np.flatnonzero(res.step == steps)[-1]) if np.any(res.step == steps) else None
    if last is None:
        return
    with np.errstate(invalid="ignore"):
        bad = ~(res.loss[:, last] <= loss_bound) & ~res.diverged
    if not bad.any():
        return
    log.warning("%d replica(s) diverged in the last step (%d)", int(bad.sum()), steps)
    res.diverged_step[bad] = steps
    res.diverged = res.diverged_step >= 0
    for arr in (res.theta, res.loss, res.sharpness, res.feature_sv, res.weight_sv):
        arr[bad, last] = np.nan


def _sgd_dataset(res, cfg: dict, n: int, step0: int = 0) -> xr.Dataset:
    """sgd.nc's variables from a run's records; ``step0`` offsets the steps (a continued run)."""
    k = max(res.feature_sv.shape[-1], res.weight_sv.shape[-1])
    dims = ("replica", "record")
    step = res.step + step0
    return xr.Dataset(
        {
            "theta": (dims + ("neuron", "feature"), res.theta),
            "loss": (dims, res.loss),
            "sharpness": (dims, res.sharpness),
            "feature_sv": (dims + ("rank",), storage.sv_padded(res.feature_sv, k)),
            "weight_sv": (dims + ("rank",), storage.sv_padded(res.weight_sv, k)),
            "diverged": (("replica",), res.diverged),
            "diverged_step": (("replica",), np.where(res.diverged, res.diverged_step + step0, -1)),
        },
        coords={
            "replica": np.arange(res.theta.shape[0]),
            "step": ("record", step),
            "tau": ("record", _clock(cfg, step, n)),
            "rank": np.arange(1, k + 1),
        },
    )


def run_brute_force(regime: str, cfg: dict, data_path: str, sgd_path: str, out: str) -> None:
    """brute_force.nc: label-noise SGD continued from SGD's last iterate for brute_force.steps more
    steps, past the hand-over to the flow, on the same τ axis (fresh noise streams from
    brute_force.seed: the same law as continuing the first run's streams).

    It is what the flow continuation replaces; :func:`compare` holds the two against each
    other at the continued run's last τ (docs/theory.md).
    """
    data, X, y, w = _inputs(data_path)
    sgd = storage.open_dataset(sgd_path)
    act = make_activation(cfg["activation"])
    b = cfg["brute_force"]
    s = cfg["sgd"]
    K = int(b["steps"])
    rec = record_schedule(K, b["log_points"], b["linear_points"])
    xp, backend = get_backend(cfg["backend"])
    t0 = time.monotonic()
    res = label_noise_sgd(
        xp,
        act,
        sgd["theta"].values[:, -1],
        X,
        y,
        w,
        eta=cfg["eta"],
        sigma=cfg["sigma"],
        steps=K,
        record_steps=rec,
        seed=b["seed"],
        dtype=cfg["dtype"],
        loss_bound=s["loss_bound"],
        progress=lambda msg: log.info("%s brute force: %s", regime, msg),
        progress_seconds=60.0,
    )
    log.info(
        "%s: brute force, %d more steps x %d replicas in %.1f s",
        regime,
        K,
        cfg["replicas"],
        time.monotonic() - t0,
    )
    ds = _sgd_dataset(res, cfg, X.shape[0], step0=int(sgd["step"].values[-1]))
    ds.attrs = _attrs(
        regime,
        cfg,
        backend,
        f"{regime}: label-noise SGD continued past the hand-over (brute force)",
        res.kernel,
    )
    ds.attrs["algorithm"] = cfg["algorithm"]["name"]
    ds.attrs["clock"] = CLOCKS[cfg["algorithm"]["name"]]
    _write_nc(ds, cfg, out)


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


def run_flow_stage(
    regime: str, cfg: dict, data_path: str, sgd_path: str, out: str, checkpoint_path: str | None = None
) -> None:
    """flow.nc: each replica continued from SGD's last iterate by dθ/dτ = −∇_M F.

    With ``checkpoint_path`` (a folder) every finished replica is saved there at once; a
    rerun after a kill runs only the others and writes the same flow.nc. The folder is
    deleted once flow.nc is written.
    """
    job = _FlowJob(regime, cfg, data_path, sgd_path, checkpoint_path)
    if job.no_flow(out):
        return
    t0 = time.monotonic()
    results = job.run(job.theta_last, job.ckpt, job.report)
    job.log_time(len(results) - results.count(None), time.monotonic() - t0)
    job.write(results, out)


class _FlowJob:
    """One regime's flow stage: its inputs and settings, then flow.nc from the flows' results."""

    def __init__(self, regime: str, cfg: dict, data_path: str, sgd_path: str, checkpoint_path: str | None):
        self.regime, self.cfg = regime, cfg
        _, self.X, self.y, self.w = _inputs(data_path)
        self.sgd = storage.open_dataset(sgd_path)
        self.act = make_activation(cfg["activation"])
        f = cfg["flow"]
        self.z_star, self.F_star, _ = _targets(self.act, self.X, self.y, self.w)
        tau0 = float(self.sgd["tau"].values[-1])
        self.tau0 = tau0 if np.isfinite(tau0) else 0.0  # GD has no clock: the flow's own time starts at 0
        self.theta_last = self.sgd["theta"].values[:, -1]
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
            log.info("%s: replica %d diverged in SGD, no flow", self.regime, r)
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
        _write_flow(self.regime, self.cfg, self.act, self.X, self.y, self.w, self.tau0, results, out)
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


def _write_flow(regime: str, cfg: dict, act, X, y, w, tau0: float, results: list, out: str) -> None:
    """flow.nc from one regime's flow results (None for a replica that diverged in SGD)."""
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
    _write_nc(ds, cfg, out)


NO_FLOW = "not_applicable"
NO_FLOW_REASON = "not applicable: no drift along M without noise (plain GD stops where it reaches M)"


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
            "status": (("replica",), np.where(finite, NO_FLOW, "sgd_diverged").astype(str)),
            "retraction": (("replica",), np.array(["none"] * R)),
        },
        coords={
            "replica": np.arange(R),
            "tau": ("record", [0.0]),
            "tau_offset": ("record", [0.0]),
            "rank": np.arange(1, fsv.shape[-1] + 1),
        },
    )
    ds.attrs = _attrs(regime, cfg, "numpy", f"{regime}: no flow ({NO_FLOW_REASON})")
    ds.attrs["tau_start"] = 0.0
    ds.attrs["flow"] = NO_FLOW_REASON
    _write_nc(ds, cfg, out)
    log.info("%s: %s; flow.nc holds GD's last iterate", regime, NO_FLOW_REASON)


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


# A run counts as having arrived on M once its loss stays at or below this (labels are O(1)).
ARRIVAL_LOSS = 1e-12


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


def _brute_force_columns(cfg, act, X, w, fl, brute_path, z_star, F_star) -> tuple[dict, float]:
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
    data, X, y, w = _inputs(data_path)
    sgd = storage.open_dataset(sgd_path)
    fl = storage.open_dataset(flow_path)
    act = make_activation(cfg["activation"])
    eps, z_tol = cfg["theory"]["epsilon"], cfg["theory"]["z_tol"]
    z_star, F_star, app2 = _targets(act, X, y, w)
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
                th_sgd, th_flow0, th_flow, X, sgd["loss"].values[:, -1], sgd["sharpness"].values[:, -1], F0
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
        cols, _ = _brute_force_columns(cfg, act, X, w, fl, brute_path, z_star, F_star)
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


# The hand-over counts as small when the retraction moves θ by at most this fraction of the
# flow's own displacement (figures say so when the median is above it).
HANDOVER_SMALL = 0.1


def _handover(th_sgd, th_flow0, th_flow_end, X, loss_sgd, F_sgd, F_flow0) -> dict[str, np.ndarray]:
    """What the retraction onto M does at the SGD-to-flow hand-over, per replica.

    θ moves from SGD's last iterate to the flow's start (its retraction onto M); the
    flow's own travel is the displacement from its start to its end.
    """
    move = np.linalg.norm(th_flow0 - th_sgd, axis=(-2, -1))
    travel = np.linalg.norm(th_flow_end - th_flow0, axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(travel > 0, move / travel, np.where(move > 0, np.inf, 0.0))
    return {
        "loss_sgd_end": loss_sgd,
        "handover_theta_move": move,
        "handover_z_move": np.max(np.abs((th_flow0 - th_sgd) @ X.T), axis=(-2, -1)),
        "sharpness_handover_before": F_sgd,
        "sharpness_handover_after": F_flow0,
        "flow_theta_travel": travel,
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
    """Why a replica does not count as having reached the Theorem 2 point ('' when it does)."""
    if row.sgd_diverged:
        return "diverged during SGD"
    if row.flow_status == NO_FLOW:
        return "no flow (GD): " + (
            "did not reach the Theorem 2 point"
            if has_target and not bool(row.reached_theorem2_point)
            else "ended at its arrival point on M"
        )
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
                "median_tau_z_eps_observed": df.loc[ok, "tau_z_eps_observed"].median(),
                "median_tau_z_eps_theorem3_bound": df.loc[ok, "tau_z_eps_theorem3_bound"].median(),
                "theorem3_z_bound_violated": _count_false_or_na(df.loc[ok, "theorem3_z_bound_holds"]),
                "lemma6_holds_all": _all_or_na(df.loc[ok, "lemma6_holds_all_records"]),
                "median_loss_sgd_end": df.loc[ok, "loss_sgd_end"].median(),
                "median_handover_theta_move": df.loc[ok, "handover_theta_move"].median(),
                "median_handover_move_ratio": df.loc[ok, "handover_move_ratio"].median(),
                "feature_rank_sgd_end_median": df.loc[ok, "feature_rank_sgd_end"].median(),
                "feature_rank_flow_end_median": df.loc[ok, "feature_rank_flow_end"].median(),
                "feature_rank_arrival_on_M_median": df.loc[
                    ok & (df["step_arrival_on_M"] >= 0), "feature_rank_arrival_on_M"
                ].median(),
                "cluster_count_flow_end_median": df.loc[ok, "cluster_count_flow_end"].median(),
                **_brute_summary(df, ok),
                "theorem2_applicable": bool(df["theorem2_applicable"].iloc[0]),
                "theorem3_applicable": bool(df["theorem3_applicable"].iloc[0]),
                "not_applicable_reason": df["not_applicable_reason"].fillna("").iloc[0],
                "failed": _failure(df),
            }
        )
    with storage.atomic_path(out) as tmp:  # medians to 6 significant digits: comparison.nc has them all
        pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.6g")


def sweep_table(csv_paths: list[str], cfgs: dict[str, dict], out: str) -> None:
    """results/sweeps/{base}.csv: one row per grid point (its values, then the medians the phase
    diagram shows), over the replicas that did not diverge."""
    rows = []
    for p in csv_paths:
        df = pd.read_csv(p, usecols=lambda c: c in SWEEP_TABLE_COLUMNS)
        regime = df["regime"].iloc[0]
        ok = ~df["sgd_diverged"].astype(bool)
        gap = df.loc[ok, "sharpness_gap"]
        rows.append(
            {
                "regime": regime,
                **cfgs[regime]["sweep_of"]["point"],
                "replicas": len(df),
                "diverged": int((~ok).sum()),
                "rank_sgd": analysis.lower_median(df.loc[ok, "feature_rank_sgd_end"]),
                "rank_flow": analysis.lower_median(df.loc[ok, "feature_rank_flow_end"]),
                "gap": gap.median() if gap.notna().any() else df.loc[ok, "sharpness_flow_end"].median(),
                "gap_is_F": not gap.notna().any(),
                # round-off of F − F*: the figures' floor times F*
                "gap_floor": analysis.GAP_FLOOR_REL * df.loc[ok, "sharpness_star"].median()
                if gap.notna().any()
                else np.nan,
            }
        )
    with storage.atomic_path(out) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


# the comparison columns sweep_table reads
SWEEP_TABLE_COLUMNS = (
    "regime",
    "sgd_diverged",
    "sharpness_gap",
    "sharpness_star",
    "sharpness_flow_end",
    "feature_rank_sgd_end",
    "feature_rank_flow_end",
)


def _failure(df: pd.DataFrame) -> str:
    """Why a regime has no result at all ('' when at least one replica got through SGD)."""
    if df["sgd_diverged"].astype(bool).all():
        return (
            f"every replica ({len(df)}) diverged during SGD; the regime's run_sgd log and the "
            "'failure' attribute of its sgd.nc suggest a stable eta"
        )
    return ""


def _count_or_na(col: pd.Series):
    """Count of True, or 'n/a' when the column is empty (theory not applicable)."""
    col = col.dropna()
    return "n/a" if col.empty else int(col.astype(bool).sum())


def _brute_summary(df: pd.DataFrame, ok: pd.Series) -> dict:
    """The brute-force columns' summary (empty where the regime has no brute-force run)."""
    if "brute_within_tol" not in df:
        return {}
    cols = ("z_gap", "z_tol", "sharpness_diff", "sharpness_tol", "z_dist_sgd", "z_dist_flow")
    diff = df.loc[ok, "brute_sharpness_diff"].dropna()
    return {
        "brute_tau": df["brute_tau"].iloc[0],
        "brute_within_tol": _count_or_na(df.loc[ok, "brute_within_tol"]),
        **{f"median_brute_{c}": df.loc[ok, f"brute_{c}"].median() for c in cols},
        # an ensemble bias smaller than the per-replica spread shows in the mean, not per replica
        "mean_brute_sharpness_diff": diff.mean(),
        "se_brute_sharpness_diff": diff.std(ddof=1) / np.sqrt(diff.count()) if diff.count() > 1 else np.nan,
    }


def _count_false_or_na(col: pd.Series):
    """Count of False (a bound surely violated), or 'n/a' when the column is empty."""
    col = col.dropna()
    return "n/a" if col.empty else int((~col.astype(bool)).sum())


def _all_or_na(col: pd.Series):
    col = col.dropna()
    return "n/a" if col.empty else bool(col.astype(bool).all())
