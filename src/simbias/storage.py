"""NetCDF in and out: the output contract of docs/outputs.md, written atomically."""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import json
import math
import os
import platform
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import xarray as xr

from . import __version__
from .config import regime_sha256

REFERENCES = (
    "K. Gatmiry, Z. Li, S. J. Reddi, S. Jegelka: Simplicity bias via global convergence of sharpness "
    "minimization. ICML 2024, PMLR 235:15102-15129, arXiv:2410.16401. "
    "Z. Li, T. Wang, S. Arora: What happens after SGD reaches zero loss? A mathematical framework. "
    "ICLR 2022 (the label-noise SGD limit, tau = eta^2 sigma^2 k)."
)

# long_name and units of every variable the pipeline writes (docs/outputs.md documents them
# per file; tests/test_outputs_doc.py checks that every written variable is documented).
# The model is dimensionless, so every unit is "1" (CF's dimensionless unit).
VARIABLES: dict[str, tuple[str, str]] = {
    # data.nc
    "x": ("training inputs x_i (rows of X)", "1"),
    "y": ("training labels y_i", "1"),
    "w": ("second-layer weights w_j", "1"),
    "theta0": ("initial first-layer weights θ_j", "1"),
    # coordinates
    "replica": ("replica index (own initial weights and label-noise stream)", "1"),
    "rank": ("singular value index k (1 = largest)", "1"),
    "step": ("SGD step k", "1"),
    "tau": ("flow time τ = η²σ²k", "1"),
    "tau_offset": ("flow time since the flow's start (SGD's last iterate)", "1"),
    "sgd_tau": ("flow time τ of the SGD record", "1"),
    "flow_tau": ("flow time τ of the flow record", "1"),
    # sgd.nc and flow.nc
    "theta": ("first-layer weights θ_j", "1"),
    "loss": ("training loss L = Σ_i (f_i − y_i)²", "1"),
    "sharpness": ("sharpness F = Σ_ij w_j² φ'(z_ji)² ‖x_i‖² (on M, Tr ∇²L = 2F)", "1"),
    "feature_sv": ("singular values of Z = ΘXᵀ, descending (NaN past min(m, n))", "1"),
    "weight_sv": ("singular values of Θ, descending (NaN past min(m, d))", "1"),
    "diverged": ("replica frozen because its loss became non-finite or exceeded loss_bound", "1"),
    "diverged_step": ("step at which the replica diverged (-1: never)", "1"),
    "grad_norm": ("Riemannian gradient norm ‖∇_M F‖", "1"),
    "theta_end": ("first-layer weights θ_j where the flow stopped", "1"),
    "tau_end": ("flow time at which the flow stopped (SGD's clock continued)", "1"),
    "grad_norm_end": ("Riemannian gradient norm ‖∇_M F‖ where the flow stopped", "1"),
    "loss_end": ("training loss L where the flow stopped", "1"),
    "sharpness_end": ("sharpness F where the flow stopped", "1"),
    "feature_sv_end": ("singular values of Z = ΘXᵀ where the flow stopped, descending", "1"),
    "weight_sv_end": ("singular values of Θ where the flow stopped, descending", "1"),
    "tau_eps_offset": (
        "flow time after the flow's start beyond which ‖∇_M F‖ ≤ epsilon held (NaN: never)",
        "1",
    ),
    "nfev": ("number of right-hand-side evaluations of the flow integrator (-1: no flow)", "1"),
    "status": ("how the flow ended: converged, stalled_near_zero_preactivation, ...", "1"),
    "retraction": ("retraction onto M used by the flow integrator", "1"),
    "z_star": ("Theorem 2 target pre-activations z*_ji", "1"),
    # comparison.nc
    "sgd_diverged": ("replica diverged during SGD", "1"),
    "flow_status": ("how the flow ended: converged, stalled_near_zero_preactivation, ...", "1"),
    "z_dist_sgd_end": ("max_ji |z_ji − z*_ji| at SGD's end (distance to the Theorem 2 point)", "1"),
    "z_dist_flow_end": ("max_ji |z_ji − z*_ji| at the flow's end (distance to the Theorem 2 point)", "1"),
    "reached_theorem2_point": ("z_dist_flow_end ≤ z_tol (1: yes, 0: no, NaN: not applicable)", "1"),
    "sharpness_sgd_end": ("sharpness F at SGD's end", "1"),
    "sharpness_flow_end": ("sharpness F at the flow's end", "1"),
    "sharpness_star": ("minimal sharpness F* on M (F at the Theorem 2 point)", "1"),
    "sharpness_gap": ("F − F* at the flow's end", "1"),
    "tau_flow_start": ("flow time τ at which the flow starts (SGD's last record)", "1"),
    "tau_eps_observed": ("observed flow time from the flow's start to ε-stationarity for good", "1"),
    "tau_eps_theorem3_bound": ("Theorem 3 bound on the flow time to ε-stationarity", "1"),
    "theorem3_bound_holds": ("tau_eps_observed ≤ tau_eps_theorem3_bound (1/0, NaN: not applicable)", "1"),
    "lemma6_bound_end": ("Lemma 6 bound ‖∇_M F‖/(√μ ϱ1ϱ2) on max|z − z*| at the flow's end", "1"),
    "lemma6_holds_all_records": ("max|z − z*| ≤ Lemma 6 bound at every flow record (1/0, NaN: n/a)", "1"),
    "feature_rank_sgd_end": ("numerical rank of Z at SGD's end (singular values > 1e-3 σ_1)", "1"),
    "feature_rank_flow_end": ("numerical rank of Z at the flow's end (singular values > 1e-3 σ_1)", "1"),
    "cluster_count_sgd_end": ("number of neuron clusters (rows of Z) at SGD's end", "1"),
    "cluster_count_flow_end": ("number of neuron clusters (rows of Z) at the flow's end", "1"),
    "feature_rank_sgd": ("numerical rank of Z at each SGD record (-1: diverged)", "1"),
    "feature_rank_flow": ("numerical rank of Z at each flow record (-1: no record)", "1"),
    "cluster_count_sgd": ("number of neuron clusters (rows of Z) at each SGD record (-1: none)", "1"),
    "cluster_count_flow": ("number of neuron clusters (rows of Z) at each flow record (-1: none)", "1"),
    "theorem2_applicable": ("Theorem 2's assumptions hold (x_i linearly independent, n ≤ d)", "1"),
    "theorem3_applicable": ("Theorem 3's assumptions hold (also ϱ1 = inf φ' > 0)", "1"),
    "not_applicable_reason": ("why theory columns are NaN (empty when they apply)", "1"),
    "flag": ("why the replica did not reach the Theorem 2 point (empty when it did)", "1"),
    "z_tol": ("tolerance on max|z − z*| for reached_theorem2_point", "1"),
}

# Yes/no variables: CF flag attributes (stored as 0/1; NaN where not applicable).
FLAGS = {
    "diverged",
    "sgd_diverged",
    "reached_theorem2_point",
    "theorem3_bound_holds",
    "lemma6_holds_all_records",
    "theorem2_applicable",
    "theorem3_applicable",
}

# Chunking: records in blocks of at most RECORD_CHUNK, every other dimension whole, then
# fewer replicas (and, if still too big, fewer records) per chunk until one is at most
# CHUNK_BYTES. A replica's trajectory is then read in one or a few chunks.
RECORD_CHUNK = 512
CHUNK_BYTES = 1 << 20
COMPLEVEL = 4


def _version(package: str) -> str:
    """An installed package's version, read from its metadata (without importing it)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def attrs_for(regime: str, cfg: dict, backend: str, dtype: str, title: str) -> dict:
    """Global attributes: CF-1.11 (Conventions, title, history, source, references) and provenance."""
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return {
        "Conventions": "CF-1.11",
        "title": title,
        "source": (
            f"simbias {__version__}: label-noise SGD and the Riemannian flow of the sharpness on the "
            "zero-loss manifold, two-layer network (numerical simulation, Snakemake pipeline)"
        ),
        "history": (
            f"{now} created by simbias {__version__} (Python {platform.python_version()}, "
            f"NumPy {np.__version__}, SciPy {_version('scipy')}, numba {_version('numba')}, "
            f"xarray {xr.__version__}, netCDF4 {_version('netCDF4')}, backend {backend}, {dtype})"
        ),
        "references": REFERENCES,
        "comment": "All quantities are dimensionless (units '1'). See docs/outputs.md for every variable.",
        "regime": regime,
        "config_json": json.dumps(cfg, sort_keys=True),
        "config_sha256": regime_sha256(cfg),
        "package_version": __version__,
        "backend": backend,
        "dtype": dtype,
        "created": now,
        "sharpness_convention": "sharpness stores F; the exact Hessian trace on M is 2F",
    }


# Index coordinates (replica number, singular value index): a long_name, no units, so that
# xarray labels an axis "replica", not "replica [1]". CF needs no units on them.
INDEX_COORDS = {"replica", "rank"}


def label(ds: xr.Dataset) -> xr.Dataset:
    """Attach long_name (every variable) and units "1" (every quantity) where missing (CF).

    Index coordinates and string variables get no units: they are not quantities.
    """
    for name in list(ds.variables):
        ln, units = VARIABLES.get(name, (name.replace("_", " "), "1"))
        attrs = ds[name].attrs
        attrs.setdefault("long_name", ln)
        if name not in INDEX_COORDS and ds[name].dtype.kind not in "OUS":
            attrs.setdefault("units", units)
        if name in FLAGS and ds[name].dtype.kind in "biuf":  # CF: flag_values of the stored type
            kind = "i1" if ds[name].dtype.kind == "b" else ds[name].dtype
            attrs.setdefault("flag_values", np.array([0, 1], dtype=kind))
            attrs.setdefault("flag_meanings", "no yes")
    return ds


def chunk_sizes(var: xr.Variable, record_chunk: int = RECORD_CHUNK, max_bytes: int = CHUNK_BYTES) -> tuple:
    """netCDF4 chunk shape of a variable: blocks along the record dims, see RECORD_CHUNK."""
    chunks = dict(var.sizes)
    for dim in chunks:
        if dim == "record" or dim.endswith("_record"):
            chunks[dim] = min(chunks[dim], record_chunk)

    def nbytes() -> int:
        return var.dtype.itemsize * math.prod(chunks.values())

    for dim in ["replica"] + [d for d in chunks if d == "record" or d.endswith("_record")]:
        while dim in chunks and chunks[dim] > 1 and nbytes() > max_bytes:
            chunks[dim] = -(-chunks[dim] // 2)
    return tuple(max(1, chunks[d]) for d in var.dims)


def encoding_for(ds: xr.Dataset) -> dict:
    """zlib (with shuffle) for every numeric variable, chunked along the record dimension."""
    enc = {}
    for name, var in ds.variables.items():
        if var.dtype.kind in "fiub" and var.size > 0 and var.ndim > 0:
            enc[name] = {
                "zlib": True,
                "complevel": COMPLEVEL,
                "shuffle": True,
                "chunksizes": chunk_sizes(var),
            }
    return enc


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
    """Label (CF long_name/units), compress (zlib, chunked along record) and atomically write."""
    ds = label(ds)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding_for(ds))


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
