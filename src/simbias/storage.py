"""NetCDF in and out: the output contract of DESIGN.md §3, written atomically."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import xarray as xr

from . import __version__
from .config import regime_sha256

REFERENCES = "Simplicity bias via global convergence of sharpness minimization (the paper in shared/paper)"

# long_name and units of every variable the pipeline writes.
VARIABLES: dict[str, tuple[str, str]] = {
    "x": ("training inputs x_i (rows of X)", "1"),
    "y": ("training labels y_i", "1"),
    "w": ("second-layer weights w_j", "1"),
    "theta0": ("initial first-layer weights θ_j", "1"),
    "step": ("SGD step k", "1"),
    "tau": ("flow time τ = η²σ²k", "1"),
    "theta": ("first-layer weights θ_j", "1"),
    "loss": ("training loss L = Σ_i (f_i − y_i)²", "1"),
    "sharpness": ("sharpness F = Σ_ij w_j² φ'(z_ji)² ‖x_i‖² (on M, Tr ∇²L = 2F)", "1"),
    "feature_sv": ("singular values of Z = ΘXᵀ, descending (NaN past min(m, n))", "1"),
    "weight_sv": ("singular values of Θ, descending (NaN past min(m, d))", "1"),
    "diverged": ("replica frozen because its loss became non-finite or exceeded loss_bound", "1"),
    "diverged_step": ("step at which the replica diverged (-1: never)", "1"),
    "grad_norm": ("Riemannian gradient norm ‖∇_M F‖", "1"),
    "z_star": ("Theorem 2 target pre-activations z*_ji", "1"),
}


def attrs_for(regime: str, cfg: dict, backend: str, dtype: str, title: str) -> dict:
    return {
        "Conventions": "CF-1.8",
        "title": title,
        "regime": regime,
        "config_json": json.dumps(cfg, sort_keys=True),
        "config_sha256": regime_sha256(cfg),
        "package_version": __version__,
        "backend": backend,
        "dtype": dtype,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "history": f"{_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')}: written by simbias {__version__}",
        "source": "simbias pipeline (Snakemake)",
        "references": REFERENCES,
        "sharpness_convention": "sharpness stores F; the exact Hessian trace on M is 2F",
    }


def label(ds: xr.Dataset) -> xr.Dataset:
    """Attach long_name and units to every variable and coordinate that has none."""
    for name in list(ds.variables):
        ln, units = VARIABLES.get(name, (name.replace("_", " "), "1"))
        ds[name].attrs.setdefault("long_name", ln)
        ds[name].attrs.setdefault("units", units)
    return ds


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it into place on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix + ".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give outputs the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_netcdf(ds: xr.Dataset, path: str | Path) -> None:
    """Label, compress (zlib) and atomically write a dataset."""
    ds = label(ds)
    enc = {}
    for name, var in ds.data_vars.items():
        if var.dtype.kind in "fiub" and var.size > 0:
            enc[name] = {"zlib": True, "complevel": 4}
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=enc)


def open_dataset(path: str | Path) -> xr.Dataset:
    """Open and load a dataset fully (so the file handle is released)."""
    with xr.open_dataset(path, engine="netcdf4") as ds:
        return ds.load()


def sv_padded(a: np.ndarray, k: int) -> np.ndarray:
    """Pad the last axis with NaN to length k (feature_sv and weight_sv share the 'rank' dim)."""
    pad = k - a.shape[-1]
    if pad <= 0:
        return a
    return np.concatenate([a, np.full(a.shape[:-1] + (pad,), np.nan)], axis=-1)
