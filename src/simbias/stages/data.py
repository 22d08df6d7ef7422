"""Stage make_data: data.nc, the training data and every replica's initial weights."""

from __future__ import annotations

import logging

import numpy as np
import xarray as xr

from .. import storage, theory
from ..data import make_dataset
from .common import stage_attrs

log = logging.getLogger(__name__)


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
    ds.attrs = stage_attrs(regime, cfg, "numpy", f"{regime}: training data and initial weights")
    ds.attrs["gram_min_eig"] = theory.gram_min_eig(d["x"])
    storage.write_netcdf(ds, out)
    log.info("%s: wrote %s (μ = λ_min(XXᵀ) = %.3g)", regime, out, ds.attrs["gram_min_eig"])


def make_data_group(regimes: list[str], cfgs: dict[str, dict], outs: list[str]) -> None:
    """data.nc of several grid points in one process (:func:`make_data` for each)."""
    for regime, out in zip(regimes, outs, strict=True):
        make_data(regime, cfgs[regime], out)
