"""Stage run_sgd: sgd.nc, the regime's algorithm (label-noise SGD, GD or 1-SAM) run by the
ensemble runner; a sweep's grid points that differ only in η and σ run as one call."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from .. import ensemble
from ..activations import make_activation
from ..backend import get_backend
from ..checkpoint import SGDCheckpoint
from ..code_version import code_version
from ..config_job import job_config, regime_sha256
from ..ensemble import SGDResult, record_schedule
from ..sam import OneSAM
from ..sgd import LabelNoise
from .common import check_same_data, fused_key, open_inputs, stage_attrs, write_nc
from .sgd_finished import finished_sgd
from .sgd_records import ALGORITHM_TITLES, CLOCKS, flag_final_divergence, sgd_dataset
from .stable_eta import all_diverged_message, largest_stable_eta

log = logging.getLogger(__name__)


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
    A hard link to the finished sgd.nc stays beside it (:mod:`.sgd_finished`), so a kill
    after sgd.nc is in place but before Snakemake records the job does not redo SGD.
    """
    finished = finished_sgd(checkpoint_path, regime, cfg, data_path)
    if finished is not None and finished.reuse(out):
        return
    xp, backend = sgd_backend(regime, cfg)
    data, X, y, w = open_inputs(data_path)
    ckpt = _sgd_checkpoint(
        checkpoint_path,
        checkpoint_every_steps,
        checkpoint_every_seconds,
        stage_fingerprint("run_sgd", regime, cfg, backend),
    )
    t0 = time.monotonic()
    res = _run_algorithm(xp, cfg, data["theta0"].values, X, y, w, cfg["eta"], cfg["sigma"], regime, ckpt)
    log.info(
        "%s: %d steps x %d replicas in %.1f s%s",
        regime,
        cfg["sgd"]["steps"],
        cfg["replicas"],
        time.monotonic() - t0,
        _resumed(ckpt),
    )
    _write_sgd(regime, cfg, res, xp, backend, data["theta0"].values, X, y, w, out, finished)
    if ckpt is not None:
        ckpt.clear(empty_parents=2)  # results/.checkpoints/{regime}/ and .checkpoints/
    if pause := os.environ.get("SIMBIAS_FAULT_PAUSE_AFTER_SGD_WRITE"):  # fault tests only
        time.sleep(float(pause))


def sgd_backend(regime: str, cfg: dict):
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


def _resumed(ckpt) -> str:
    """The timing log line's note of a resumed run ('' when it started afresh)."""
    return "" if ckpt is None or ckpt.resumed_from is None else f" (resumed at step {ckpt.resumed_from})"


def stage_fingerprint(stage: str, regime: str, cfg: dict, backend: str) -> dict:
    """What a stage's checkpoint must match beyond the loop's own inputs: regime, config, the
    stage's code version and the backend."""
    return {
        "regime": regime,
        "config_sha256": regime_sha256(job_config(cfg)),
        "code": code_version(stage),
        "backend": backend,
    }


def _sgd_checkpoint(path: str | None, every_steps: int, every_seconds: float, key: dict):
    if not path:
        return None
    return SGDCheckpoint(path, every_steps=every_steps, every_seconds=every_seconds, fingerprint=key)


def _run_algorithm(xp, cfg: dict, theta0, X, y, w, eta, sigma, label: str, ckpt, replicas=None):
    """The regime's algorithm (label-noise SGD, GD or 1-SAM) from θ0, run by the ensemble runner;
    η and σ numbers or one per replica."""
    s, alg = cfg["sgd"], cfg["algorithm"]
    steps = np.union1d(
        record_schedule(s["steps"], s["log_points"], s["linear_points"]),
        np.asarray(s.get("record_steps", []), dtype=np.int64),
    )
    if alg["name"] == "one_sam":
        rule = OneSAM(eta=eta, rho=alg["rho"], order=alg["order"], seed=s["seed"], n=X.shape[0])
    else:
        rule = LabelNoise(eta=eta, sigma=sigma, seed=s["seed"])
    return ensemble.run(
        xp,
        make_activation(cfg["activation"]),
        rule,
        theta0,
        X,
        y,
        w,
        steps=s["steps"],
        record_steps=steps,
        dtype=cfg["dtype"],
        loss_bound=s["loss_bound"],
        progress=lambda msg: log.info("%s: %s", label, msg),
        checkpoint=ckpt,
        replicas=replicas,
    )


def _write_sgd(regime: str, cfg: dict, res, xp, backend: str, theta0, X, y, w, out: str, finished) -> None:
    """sgd.nc from one regime's records: the last-step divergence rule, why a regime failed."""
    s, alg = cfg["sgd"], cfg["algorithm"]
    flag_final_divergence(res, s["loss_bound"], s["steps"])
    failure = ""
    if res.diverged.all():  # the regime failed: say why, but do not block the other regimes' aggregates
        est = largest_stable_eta(xp, make_activation(cfg["activation"]), theta0, X, y, w, cfg)
        failure = all_diverged_message(regime, cfg, res, res.loss[:, 0], est)
        log.error("%s", failure)
    elif res.diverged.any():
        log.warning(
            "%s: %d of %d replicas diverged (frozen; NaN records after diverged_step); "
            "flow, comparison and figures leave them out",
            regime,
            int(res.diverged.sum()),
            res.diverged.size,
        )
    ds = sgd_dataset(res, cfg, X.shape[0])
    ds.attrs = stage_attrs(regime, cfg, backend, f"{regime}: {ALGORITHM_TITLES[alg['name']]}", res.kernel)
    ds.attrs["algorithm"] = alg["name"]
    ds.attrs["clock"] = CLOCKS[alg["name"]]
    ds.attrs["failure"] = failure  # why the regime failed ('' when it did not)
    if alg["name"] == "one_sam":
        ds.attrs["one_sam_order"] = alg["order"]
    write_nc(ds, cfg, out)
    if finished is not None:
        finished.keep(out)


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
            fin = finished_sgd(str(ckpt_dir / regime / "run_sgd.npz"), regime, cfg, data_paths[i])
            if fin.reuse(outs[i]):
                continue
        finished[i] = fin
        todo.setdefault(fused_key(cfg) or f"alone:{i}", []).append(i)
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


def _run_fused(regimes, cfgs, data_paths, outs, finished, ckpt_dir, every_steps, every_seconds) -> None:
    """One SGD call for grid points that differ only in η and σ (see :func:`run_sgd_group`)."""
    first = cfgs[regimes[0]]
    label = f"{regimes[0]} and {len(regimes) - 1} more grid points"
    xp, backend = sgd_backend(regimes[0], first)
    inputs = [open_inputs(p) for p in data_paths]
    _, X, y, w = inputs[0]
    check_same_data(regimes, [(X2, y2, w2) for _, X2, y2, w2 in inputs])
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
    res = _run_algorithm(xp, first, theta0, X, y, w, eta, sigma, label, ckpt, point_replica_ids(P, R))
    log.info(
        "%s: %d steps x %d replicas (%d points x %d) in one call, %.1f s%s",
        label,
        first["sgd"]["steps"],
        P * R,
        P,
        R,
        time.monotonic() - t0,
        _resumed(ckpt),
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
