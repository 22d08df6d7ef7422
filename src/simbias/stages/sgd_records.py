"""sgd.nc's variables from a run's records: the clock of each algorithm and the last-step
divergence rule (shared by the SGD stage and the brute-force continuation)."""

from __future__ import annotations

import logging

import numpy as np
import xarray as xr

from .. import storage
from ..sam import tau_of_step as sam_tau
from ..sgd import tau_of_step

log = logging.getLogger(__name__)


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


def clock(cfg: dict, step: np.ndarray, n: int) -> np.ndarray:
    """Flow time of each step for the regime's algorithm (NaN for GD, which has no clock)."""
    alg = cfg["algorithm"]
    if alg["name"] == "one_sam":
        return sam_tau(step, cfg["eta"], alg["rho"], n)
    if alg["name"] == "gd":
        return np.full(np.shape(step), np.nan)
    return tau_of_step(step, cfg["eta"], cfg["sigma"])


def sgd_dataset(res, cfg: dict, n: int, step0: int = 0) -> xr.Dataset:
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
            "tau": ("record", clock(cfg, step, n)),
            "rank": np.arange(1, k + 1),
        },
    )


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
