"""Seconds for the comparison stage at fig1a size with many replicas: vectorised clusters against
SciPy's linkage per (replica, record).

Set-up (not timed, in ``--workdir``): fig1a's regime (m, d, n = 10, 3, 3, η = 0.05, σ = 0.03, data
seed 6) with ``--replicas`` replicas: data.nc and ``--steps`` SGD steps for every replica (73
records at 2·10⁴ steps), then the flow (80 records) for the first 32 replicas, tiled to all replicas (the comparison's cost
does not depend on which replica a flow belongs to; only its numbers would). Timed, one after the
other in this process:

- ``compare``: `simbias.stages.compare.compare` as the pipeline runs it (reading the NetCDF files,
  every column, writing comparison.nc and .csv);
- ``compare_old``: the same with ``analysis.cluster_count`` replaced by the per-matrix SciPy
  ``linkage``/``fcluster`` loop it replaced (``analysis.neuron_clusters``);
- ``clusters`` / ``clusters_old``: the cluster counts alone, over every SGD and flow record of every
  replica, the two ways (checked equal).

One JSON line per measurement: wall and CPU seconds. Run under the shared lock:
``flock /tmp/s2/bench.lock python benchmarks/compare_scaling.py [--replicas 1024]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import xarray as xr


def setup(work: Path, replicas: int, steps: int) -> dict:
    from simbias import storage
    from simbias.config import validate_config
    from simbias.stages.data import make_data
    from simbias.stages.flow import run_flow_stage
    from simbias.stages.sgd import run_sgd

    reg = {"m": 10, "d": 3, "n": 3, "eta": 0.05, "sigma": 0.03, "replicas": replicas, "data": {"seed": 6}}
    reg["sgd"] = {"steps": steps}
    cfg = validate_config({"regimes": {"b": reg}, "limits": {"memory_gb": 64, "hours": 100}})["regimes"]["b"]
    p = {k: work / f"{k}.nc" for k in ("data", "sgd", "flow", "comparison")}
    if not p["flow"].exists():
        make_data("b", cfg, str(p["data"]))
        run_sgd("b", cfg, str(p["data"]), str(p["sgd"]))
        few = {k: work / f"{k}_32.nc" for k in ("data", "sgd", "flow")}
        for k in ("data", "sgd"):
            with storage.open_dataset(p[k]) as ds:
                storage.write_netcdf(ds.isel(replica=slice(0, 32)).load(), str(few[k]))
        run_flow_stage("b", cfg, str(few["data"]), str(few["sgd"]), str(few["flow"]))
        with storage.open_dataset(few["flow"]) as fl:
            fl = fl.load()
        reps = -(-replicas // 32)
        tiled = xr.concat([fl] * reps, dim="replica").isel(replica=slice(0, replicas))
        storage.write_netcdf(tiled.assign_coords(replica=np.arange(replicas)), str(p["flow"]))
    return {"cfg": cfg, "paths": p}


def timed(fn) -> tuple[float, float, object]:
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--replicas", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--workdir", default="/tmp/simbias_compare_bench")
    args = ap.parse_args()
    work = Path(args.workdir) / f"r{args.replicas}_s{args.steps}"
    work.mkdir(parents=True, exist_ok=True)
    from simbias import analysis, storage
    from simbias.stages import compare as compare_stage

    s = setup(work, args.replicas, args.steps)
    cfg, p = s["cfg"], s["paths"]
    new_count = analysis.cluster_count

    def old_count(Z, rel_tol=analysis.CLUSTER_REL_TOL):
        flat = Z.reshape((-1,) + Z.shape[-2:])
        return np.array([len(analysis.neuron_clusters(z, rel_tol)) or -1 for z in flat]).reshape(Z.shape[:-2])

    X = storage.open_dataset(p["data"])["x"].values
    Z = np.concatenate(
        [storage.open_dataset(p[k])["theta"].values @ X.T for k in ("sgd", "flow")], axis=1
    )  # (replicas, sgd + flow records, m, n)

    def compare():
        compare_stage.compare(
            "b", cfg, *(str(p[k]) for k in ("data", "sgd", "flow", "comparison")), str(work / "c.csv")
        )

    compare()  # warm-up: imports, file caches
    rows = []
    wall, cpu, counts = timed(lambda: new_count(Z))
    rows.append({"what": "clusters", "wall_s": wall, "cpu_s": cpu})
    wall, cpu, _ = timed(compare)
    rows.append({"what": "compare", "wall_s": wall, "cpu_s": cpu})
    wall, cpu, old = timed(lambda: old_count(Z))
    rows.append({"what": "clusters_old", "wall_s": wall, "cpu_s": cpu})
    assert np.array_equal(old, counts), "vectorised counts differ from SciPy's linkage"
    analysis.cluster_count = old_count
    try:
        wall, cpu, _ = timed(compare)
    finally:
        analysis.cluster_count = new_count
    rows.append({"what": "compare_old", "wall_s": wall, "cpu_s": cpu})
    hist = np.bincount(counts[counts >= 0].ravel(), minlength=11).tolist()
    for r in rows:
        r.update(replicas=args.replicas, matrices=int(Z.shape[0] * Z.shape[1]), m=10, n=3)
        print(json.dumps(r), flush=True)
    print(json.dumps({"cluster_count_histogram": hist}))


if __name__ == "__main__":
    main()
