"""One regime's outputs as one xarray Dataset: ``simbias.open_regime("results/fig1a")``.

SGD's records (``sgd.nc``) and the flow's (``flow.nc``) on one ``record`` axis whose ``tau``
coordinate is the flow time of docs/math.md (the flow continues SGD's clock), with ``stage``
("sgd" or "flow") and ``step`` (−1 on flow records) as coordinates; beside them each replica's
SGD and flow end state, the comparison with the theory (``comparison.nc``) and the data
(``data.nc``). Nothing is recomputed. docs/outputs.md documents every variable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from . import storage

# per-record variables of both stages (the flow also has grad_norm; SGD's is NaN there)
PER_RECORD = ("theta", "loss", "sharpness", "feature_sv", "weight_sv", "grad_norm")
# comparison.nc's per-record structure, one variable per stage -> one variable on the joint axis
STRUCTURE = ("feature_rank", "cluster_count")
# global attributes of comparison.nc that are facts about the theory, not provenance
THEORY_ATTRS = (
    "mu",
    "rho1",
    "rho2",
    "beta",
    "beta_paper",
    "epsilon",
    "z_tol",
    "rank_rel_threshold",
    "cluster_rel_tol",
    "theorem2_applicable",
    "theorem2_reason",
    "theorem3_applicable",
    "theorem3_reason",
)


def _stage(ds: xr.Dataset, stage: str, step: np.ndarray, extra: dict) -> xr.Dataset:
    """One stage's per-record variables with the joint coordinates (tau, step, stage)."""
    R, T = ds.sizes["replica"], ds.sizes["record"]
    out = xr.Dataset(coords={"replica": ds["replica"].values, "rank": ds["rank"].values})
    for name in PER_RECORD:
        if name in ds:
            out[name] = ds[name].variable
        else:
            out[name] = (("replica", "record"), np.full((R, T), np.nan))
    for name, values in extra.items():
        out[name] = (("replica", "record"), values)
    return out.assign_coords(
        tau=("record", ds["tau"].values),
        step=("record", step.astype(np.int64)),
        stage=("record", np.full(T, stage)),
    )


def open_regime(folder: str | Path) -> xr.Dataset:
    """SGD and the flow on one τ axis, the end states, the comparison and the data of a regime."""
    folder = Path(folder)
    sgd = storage.open_dataset(folder / "sgd.nc")
    fl = storage.open_dataset(folder / "flow.nc")
    cmp_ = storage.open_dataset(folder / "comparison.nc")
    data = storage.open_dataset(folder / "data.nc")
    joint = xr.concat(
        [
            _stage(sgd, "sgd", sgd["step"].values, {v: cmp_[f"{v}_sgd"].values for v in STRUCTURE}),
            _stage(
                fl, "flow", np.full(fl.sizes["record"], -1), {v: cmp_[f"{v}_flow"].values for v in STRUCTURE}
            ),
        ],
        dim="record",
    )
    for name in PER_RECORD:
        joint[name].attrs = dict((sgd if name in sgd else fl)[name].attrs)
    joint["feature_rank"].attrs = {"long_name": "numerical rank of Z (singular values > 1e-3 σ_1; -1: none)"}
    joint["cluster_count"].attrs = {"long_name": "number of neuron clusters (rows of Z; -1: none)"}
    joint["tau"].attrs = {"long_name": "flow time τ (the flow continues SGD's clock)", "units": "1"}
    joint["step"].attrs = {"long_name": "SGD step k (-1 on flow records)", "units": "1"}
    joint["stage"].attrs = {"long_name": "which stage wrote the record: sgd or flow"}
    # per-replica end states and SGD's divergence, then the comparison (one row per replica)
    ends = [
        v for v in fl.data_vars if fl[v].dims and fl[v].dims[0] == "replica" and "record" not in fl[v].dims
    ]
    joint = joint.merge(fl[ends]).merge(sgd[["diverged", "diverged_step"]])
    per_replica = [v for v in cmp_.data_vars if cmp_[v].dims == ("replica",) and v not in joint]
    joint = joint.merge(cmp_[per_replica]).merge(data)
    joint.attrs = dict(sgd.attrs)
    joint.attrs["title"] = f"{sgd.attrs['regime']}: SGD and the flow on one τ axis, with the comparison"
    joint.attrs["tau_start"] = float(fl.attrs["tau_start"])
    joint.attrs.update({k: cmp_.attrs[k] for k in THEORY_ATTRS if k in cmp_.attrs})
    return joint
