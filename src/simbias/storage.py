"""NetCDF in and out: the output contract of docs/outputs.md, written atomically."""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import importlib.metadata
import json
import math
import os
import platform
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from . import signals
from ._version import __version__
from .config_job import regime_sha256

if TYPE_CHECKING:
    import pandas as pd

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
    "record_overflow": (
        "a finite value of the replica's records is beyond record_dtype's range (stored as inf)",
        "1",
    ),
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
    "tau_eps_theorem3_bound": ("bound (paper eq. 16) on the flow time to ‖∇_M F‖ ≤ ε for good", "1"),
    "theorem3_bound_holds": ("tau_eps_observed ≤ tau_eps_theorem3_bound (1/0, NaN: not applicable)", "1"),
    "tau_z_eps_observed": ("first flow record from which max|z − z*| ≤ ε held for good", "1"),
    "tau_z_eps_observed_after": ("the record before tau_z_eps_observed: the time lies in (after, at]", "1"),
    "tau_z_eps_theorem3_bound": ("Theorem 3 (C.1) = eq. 17 bound on the flow time to max|z − z*| ≤ ε", "1"),
    "theorem3_z_bound_holds": ("distance time ≤ its bound (1/0; NaN: n/a or undecided between records)", "1"),
    "theorem3_weight_scale": ("c² for constant weights w_j = c: bounds rescaled from F = c²F₁", "1"),
    "lemma6_bound_end": ("Lemma 6 bound ‖∇_M F‖/(c²√μ ϱ1ϱ2) on max|z − z*| at the flow's end", "1"),
    "lemma6_holds_all_records": ("max|z − z*| ≤ Lemma 6 bound at every flow record (1/0, NaN: n/a)", "1"),
    "loss_sgd_end": ("loss L at SGD's end (the hand-over)", "1"),
    "handover_theta_move": ("‖θ_flow(0) − θ_SGD(end)‖_F: how far the retraction onto M moves θ", "1"),
    "handover_z_move": ("max_ji |Δz_ji| of the retraction onto M at the hand-over", "1"),
    "sharpness_handover_before": ("F at SGD's last iterate, before the retraction", "1"),
    "sharpness_handover_after": ("F at the flow's start, after the retraction onto M", "1"),
    "flow_theta_travel": ("‖θ_flow(end) − θ_flow(0)‖_F: the flow's own displacement", "1"),
    "theta_displacement": ("‖θ_flow(end) − θ_SGD(0)‖_F: θ's displacement over the whole run", "1"),
    "handover_move_ratio": ("handover_theta_move / theta_displacement (NaN: undefined, see flag)", "1"),
    "step_arrival_on_M": ("first record step from which the loss stayed ≤ 1e-12 (-1: never)", "1"),
    "feature_rank_arrival_on_M": ("numerical rank of Z at step_arrival_on_M (-1: never arrived)", "1"),
    "brute_tau": ("flow time τ at which SGD continued past the hand-over is held against the flow", "1"),
    "brute_z_dist_sgd": ("max|z − z*| of SGD continued to brute_tau", "1"),
    "brute_z_dist_flow": ("max|z − z*| of the flow at brute_tau", "1"),
    "brute_sharpness_gap_sgd": ("F − F* of SGD continued to brute_tau (F where there is no F*)", "1"),
    "brute_sharpness_gap_flow": ("F − F* of the flow at brute_tau (F where there is no F*)", "1"),
    "brute_z_gap": ("max_ji |z_ji(SGD) − z_ji(flow)| at brute_tau", "1"),
    "brute_z_tol": ("5 sd of SGD's stationary spread of z around the flow's point (max over ji)", "1"),
    "brute_sharpness_diff": ("F(SGD) − F(flow) at brute_tau", "1"),
    "brute_sharpness_tol": ("5 sd of SGD's stationary spread of F around the flow's point", "1"),
    "brute_within_tol": ("brute_z_gap ≤ brute_z_tol and |brute_sharpness_diff| ≤ brute_sharpness_tol", "1"),
    "brute_loss_sgd": ("loss of SGD continued to brute_tau", "1"),
    "brute_loss_stationary": ("SGD's predicted stationary loss Σ ησ²λ/(1 − ηλ) at the flow's point", "1"),
    "brute_feature_rank_sgd": ("numerical rank of Z of SGD continued to brute_tau", "1"),
    "feature_rank_sgd_end": ("numerical rank of Z at SGD's end (singular values > 1e-3 σ_1)", "1"),
    "feature_rank_flow_end": ("numerical rank of Z at the flow's end (singular values > 1e-3 σ_1)", "1"),
    "cluster_count_sgd_end": ("number of neuron clusters (rows of Z) at SGD's end", "1"),
    "cluster_count_flow_end": ("number of neuron clusters (rows of Z) at the flow's end", "1"),
    "feature_rank_sgd": ("numerical rank of Z at each SGD record (-1: diverged)", "1"),
    "feature_rank_flow": ("numerical rank of Z at each flow record (-1: no record)", "1"),
    "cluster_count_sgd": ("number of neuron clusters (rows of Z) at each SGD record (-1: none)", "1"),
    "cluster_count_flow": ("number of neuron clusters (rows of Z) at each flow record (-1: none)", "1"),
    "theorem2_applicable": ("Theorem 2's assumptions hold (x_i linearly independent, n ≤ d)", "1"),
    "theorem3_applicable": ("Theorem 3's and Lemma 6's assumptions hold (also ϱ1 > 0, constant w)", "1"),
    "not_applicable_reason": ("why theory columns are NaN (empty when they apply)", "1"),
    "flag": (
        "why the replica did not reach the Theorem 2 point (empty when it did), or why its hand-over ratio is undefined",
        "1",
    ),
    "z_tol": ("tolerance on max|z − z*| for reached_theorem2_point", "1"),
}

# Yes/no variables: CF flag attributes (stored as 0/1; NaN where not applicable).
FLAGS = {
    "diverged",
    "record_overflow",
    "sgd_diverged",
    "reached_theorem2_point",
    "theorem3_bound_holds",
    "theorem3_z_bound_holds",
    "brute_within_tol",
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


def remove_stale_temporaries(path: Path) -> None:
    """Delete temporary files that a killed writer of ``path`` left (only one job writes a path)."""
    pattern = re.compile(rf"\.{re.escape(path.stem)}\.[a-z0-9_]{{8}}{re.escape(path.suffix)}\.tmp")
    for tmp in path.parent.glob(f".{path.stem}.*.tmp"):
        if pattern.fullmatch(tmp.name):
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it into place on success.

    SIGINT and SIGTERM wait until the file is in place or removed (:func:`simbias.signals.deferred`).
    A write that fails because the disk is full raises :class:`OSError` (errno ENOSPC) naming
    ``path`` (netCDF reports a full disk only as "NetCDF: HDF error"); the previous file, if
    any, is left as it was and the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    umask = os.umask(0)
    os.umask(umask)
    with signals.deferred():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix + ".tmp", dir=path.parent)
        os.close(fd)
        try:
            yield Path(tmp)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give outputs the usual permissions
            os.replace(tmp, path)
        except (OSError, RuntimeError) as exc:
            if (full := disk_full(exc, path)) is not None:
                raise full from exc
            raise
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


# A write error with less than this free on the file system is taken for a full disk: the
# libraries below netCDF (HDF5) report ENOSPC as a bare "HDF error", with no errno.
DISK_FULL_FREE_BYTES = 64 << 20


def disk_full(exc: BaseException, path: Path) -> OSError | None:
    """The one-line ENOSPC error for a failed write of ``path``; None when the disk is not full.

    The disk counts as full when the error chain holds ENOSPC or EDQUOT, or when the error
    carries no errno (netCDF's "HDF error") and the file system has under
    :data:`DISK_FULL_FREE_BYTES` free (read while the failed temporary file still holds its space).
    """
    chain, e = [], exc
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    if any(getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) for e in chain):
        why = "no space left on device"
    else:
        try:
            st = os.statvfs(path.parent)
        except OSError:
            return None
        free = (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize
        if free >= DISK_FULL_FREE_BYTES:
            return None
        why = f"no space left on device ({free / 2**20:.1f} MiB free)"
    err = OSError(
        f"{why} writing {path} ({type(exc).__name__}: {exc}); the previous {path.name}, if any, is "
        "unchanged. Free some space (or link results/ to a larger disk) and run the same command again"
    )
    err.errno = errno.ENOSPC
    return err


def write_netcdf(ds: xr.Dataset, path: str | Path, record_dtype: str = "float64") -> None:
    """Label (CF long_name/units), compress (zlib, chunked along record) and atomically write.

    ``record_dtype="float32"`` stores the per-record floating-point variables (the trajectories,
    which make up nearly all of a file) as float32; coordinates, end states and the rest keep
    their own type. The global attribute ``record_dtype`` (in files with a ``record`` dimension)
    says which.
    """
    ds = label(ds)
    if "record" in ds.dims:
        ds.attrs["record_dtype"] = record_dtype
    enc = encoding_for(ds)
    if record_dtype != "float64":
        for name, var in ds.data_vars.items():
            if "record" in var.dims and var.dtype.kind == "f" and name in enc:
                enc[name]["dtype"] = record_dtype
    # values beyond a narrower record_dtype become ±inf: flagged by the caller (record_overflow)
    with atomic_path(path) as tmp, np.errstate(over="ignore"):
        ds.to_netcdf(tmp, engine="netcdf4", encoding=enc)


def record_overflow(ds: xr.Dataset, record_dtype: str) -> tuple[np.ndarray, str]:
    """Per replica: whether a finite value of a per-record float variable is beyond
    ``record_dtype``'s range (stored as ±inf); and the largest such value and its variable, as text."""
    over = np.zeros(ds.sizes["replica"], dtype=bool)
    worst, where = 0.0, ""
    if np.dtype(record_dtype) == np.float64:
        return over, ""
    big = float(np.finfo(record_dtype).max)
    for name, var in ds.data_vars.items():
        if "record" not in var.dims or "replica" not in var.dims or var.dtype.kind != "f":
            continue
        v = var.transpose("replica", ...).values
        with np.errstate(over="ignore"):
            bad = np.isfinite(v) & ~np.isfinite(v.astype(record_dtype))
        if bad.any():
            over |= bad.reshape(len(over), -1).any(axis=1)
            if (top := float(np.max(np.abs(v[bad])))) > worst:
                worst, where = top, f"{name} = {top:.3g} (largest {record_dtype}: {big:.3g})"
    return over, where


def open_dataset(path: str | Path) -> xr.Dataset:
    """Open and load a dataset fully (so the file handle is released).

    A file that cannot be read (truncated or corrupted outside the pipeline: its own
    writes are atomic) raises an error that names it and says how to recover. Trajectories
    stored as float32 (``record_dtype``) are read back as float64, the stages' type.
    """
    try:
        with signals.deferred(), xr.open_dataset(path, engine="netcdf4") as ds:  # netCDF4 under a lock
            ds = ds.load()
    except FileNotFoundError:
        raise
    except (OSError, ValueError, RuntimeError) as exc:
        raise OSError(
            f"{path} cannot be read ({exc}): it is corrupt or truncated. Delete it and run the same "
            "snakemake command again: Snakemake then computes it anew"
        ) from exc
    if ds.attrs.get("record_dtype", "float64") != "float64":  # the stages compute in float64
        for name, var in list(ds.data_vars.items()):
            if var.dtype == np.float32:
                ds[name] = var.astype(np.float64)
    return ds


def dataset_from_frame(df: pd.DataFrame) -> xr.Dataset:
    """``xr.Dataset.from_dataframe(df)`` for a one-level index, with every column added at once
    (from_dataframe merges them in one by one: a quarter of a sweep point's comparison job)."""
    frame = xr.Dataset.from_dataframe(df.iloc[:, :0])
    return frame.assign({k: (df.index.name, np.asarray(v)) for k, v in df.items()})[list(df.columns)]


def sv_padded(a: np.ndarray, k: int) -> np.ndarray:
    """Pad the last axis with NaN to length k (feature_sv and weight_sv share the 'rank' dim)."""
    pad = k - a.shape[-1]
    if pad <= 0:
        return a
    return np.concatenate([a, np.full(a.shape[:-1] + (pad,), np.nan)], axis=-1)
