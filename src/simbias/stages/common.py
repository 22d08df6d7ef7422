"""What several stages share: a stage file's attributes and writing, the data inputs, which
grid points run as one, and how GD's flow.nc says that no flow ran."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from .. import storage
from ..config_job import job_config


def stage_attrs(regime: str, cfg: dict, backend: str, title: str, kernel: str = "numpy") -> dict:
    """Global attributes, with ``backend`` and ``kernel`` (the code that computed the file)."""
    return {**storage.attrs_for(regime, cfg, backend, cfg.get("dtype", "float64"), title), "kernel": kernel}


def write_nc(ds: xr.Dataset, cfg: dict, out: str) -> None:
    """A stage's NetCDF file, its trajectories stored in the regime's ``record_dtype``."""
    storage.write_netcdf(ds, out, record_dtype=cfg.get("record_dtype", "float64"))


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
