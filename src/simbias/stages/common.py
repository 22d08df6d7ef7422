"""What several stages share: a stage file's attributes and writing, the data inputs, which
grid points run as one, and how GD's flow.nc says that no flow ran."""

from __future__ import annotations

import json
import logging

import numpy as np
import xarray as xr

from .. import storage
from ..config_job import job_config

log = logging.getLogger(__name__)


def stage_attrs(regime: str, cfg: dict, backend: str, title: str, kernel: str = "numpy") -> dict:
    """Global attributes, with ``backend`` and ``kernel`` (the code that computed the file)."""
    return {**storage.attrs_for(regime, cfg, backend, cfg.get("dtype", "float64"), title), "kernel": kernel}


def write_nc(ds: xr.Dataset, cfg: dict, out: str) -> None:
    """A stage's NetCDF file, its trajectories stored in the regime's ``record_dtype``.

    A file of trajectories gets ``record_overflow`` (replica): 1 where a finite value does not
    fit ``record_dtype`` (float32 beyond 3.4e38) and is stored as ±inf, with a warning in the log.
    """
    record_dtype = cfg.get("record_dtype", "float64")
    if "replica" in ds.dims and "record" in ds.dims:
        over, worst = storage.record_overflow(ds, record_dtype)
        ds["record_overflow"] = ("replica", over)
        if over.any():
            log.warning(
                "%s: replica(s) %s have values beyond record_dtype %s's range (%s): stored as inf "
                "and flagged in record_overflow; record_dtype: float64 stores them as computed",
                out,
                ", ".join(map(str, np.flatnonzero(over))),
                record_dtype,
                worst,
            )
    storage.write_netcdf(ds, out, record_dtype=record_dtype)


def open_inputs(data_path: str):
    ds = storage.open_dataset(data_path)
    return ds, ds["x"].values, ds["y"].values, ds["w"].values


def fused_key(cfg: dict) -> str | None:
    """What grid points must share to run as one SGD call (all but η and σ); None: never fused
    (1-SAM keeps its own loop per point)."""
    if cfg["algorithm"]["name"] == "one_sam":
        return None
    rest = {k: v for k, v in job_config(cfg).items() if k not in ("eta", "sigma", "sweep_of", "description")}
    return json.dumps(rest, sort_keys=True)


def check_same_data(regimes: list[str], arrays: list[tuple]) -> None:
    """Grid points run as one must hold the same (X, y, w): their data config is one."""
    for regime, arr in zip(regimes[1:], arrays[1:], strict=True):
        if not all(np.array_equal(a, b) for a, b in zip(arrays[0], arr, strict=True)):
            raise RuntimeError(
                f"{regime}: data.nc differs from {regimes[0]}'s though their data config is one"
            )


NO_FLOW = "not_applicable"


NO_FLOW_REASON = "not applicable: no drift along M without noise (plain GD stops where it reaches M)"


# flow.nc's status of a replica whose start (SGD's last record) is not finite as stored
START_NOT_FINITE = "start_not_finite"
