#!/usr/bin/env python
"""The pipeline's SGD stage on a GPU against the CPU fast path, and a grouped sweep's SGD.

    python benchmarks/gpu_pipeline_check.py [--regimes fig1a,fig1b] [--points 1000] [--work DIR]

Run from the repository root on a machine with a GPU (needs the package's dependencies, not
Snakemake). For each regime of ``config.yaml`` it writes data.nc, then sgd.nc twice through
``simbias.stages.sgd.run_sgd``, once with ``backend: auto`` (CuPy where a GPU is usable) and once with
``backend: numpy`` (the numba CPU fast path), and prints the data variables that differ (with
max |a − b| / max |b|) and each file's ``backend`` and ``kernel`` attributes. Then it runs an
(η, σ) sweep of ``--points`` grid points at fig1a's size (16 replicas, 10⁵ steps;
``benchmarks/sweep_scaling.py``'s grid) through ``run_sgd_group`` as ONE call, and
compares three points with the same points run alone on the CPU. Lines that start with
``RESULT`` are the findings. ``--backend numpy`` runs the whole thing on the CPU (a dry run of
the script where there is no GPU).
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sweep_scaling  # noqa: E402

from simbias import config, config_job, config_yaml  # noqa: E402
from simbias.backend import cupy_usable  # noqa: E402
from simbias.stages import data as data_stage  # noqa: E402
from simbias.stages import sgd as sgd_stage  # noqa: E402


def differences(a: Path, b: Path) -> tuple[list, tuple]:
    """[(variable, max |a − b| / max |b|)] of the data variables that differ, and both files'
    (backend, kernel) attributes."""
    A, B = xr.open_dataset(a), xr.open_dataset(b)
    bad = []
    for v in A.data_vars:
        x, y = A[v].values, B[v].values
        if not np.array_equal(x, y, equal_nan=True):
            rel = float(np.nanmax(np.abs(x - y)) / np.nanmax(np.abs(y))) if x.dtype.kind == "f" else None
            bad.append((v, rel))
    return bad, (A.attrs.get("backend"), A.attrs.get("kernel"), B.attrs.get("backend"), B.attrs.get("kernel"))


def sgd_twice(name: str, cfg: dict, data: Path, work: Path, backend: str) -> dict[str, Path]:
    outs = {}
    for b in (backend, "numpy"):
        c = copy.deepcopy(cfg)
        c["backend"] = b
        out = work / f"{name}_{b}.nc"
        t0 = time.perf_counter()
        sgd_stage.run_sgd(name, c, str(data), str(out))
        print(f"RESULT {name} backend={b}: run_sgd {time.perf_counter() - t0:.2f} s "
              f"({cfg['replicas']} replicas x {cfg['sgd']['steps']} steps)", flush=True)  # fmt: skip
        outs[b] = out
    return outs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--regimes", default="fig1a,fig1b")
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--backend", default="auto", help="the backend checked against numpy (default auto)")
    ap.add_argument("--work", default="/tmp/gpu_pipeline_check")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(name)s %(message)s")
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    print("cupy_usable:", cupy_usable(), flush=True)
    full = config.load_config_file("config.yaml")
    for name in a.regimes.split(","):
        cfg = config_job.job_config(full["regimes"][name])
        data = work / f"{name}_data.nc"
        data_stage.make_data(name, cfg, str(data))
        outs = sgd_twice(name, cfg, data, work, a.backend)
        print(f"RESULT {name} {a.backend} vs numpy, differing data variables, attributes:",
              differences(outs[a.backend], outs["numpy"]), flush=True)  # fmt: skip
    if a.points <= 0:
        return 0
    P = a.points
    regf = sweep_scaling.regimes_file(work, P, 100000, P)
    raw = config_yaml.read_config_yaml("config.yaml")
    raw["regimes"] = yaml.safe_load(regf.read_text())["regimes"]
    raw["regimes"]["sw"]["backend"] = a.backend
    cfgs = {
        k: config_job.job_config(v) for k, v in config.validate_config(raw)["regimes"].items() if k != "sw"
    }
    names = sorted(cfgs)
    data = work / "sw_data.nc"
    data_stage.make_data(names[0], cfgs[names[0]], str(data))
    (work / "sw").mkdir(exist_ok=True)
    outs = [str(work / "sw" / f"{n}.nc") for n in names]
    t0 = time.perf_counter()
    sgd_stage.run_sgd_group(names, cfgs, [str(data)] * P, outs)
    print(f"RESULT sweep of {P} points x 16 replicas x 1e5 steps, backend {a.backend}: run_sgd_group "
          f"{time.perf_counter() - t0:.1f} s, writing {P} sgd.nc included", flush=True)  # fmt: skip
    for i in sorted({0, P // 2 + 1, P - 1}):
        c = copy.deepcopy(cfgs[names[i]])
        c["backend"] = "numpy"
        alone = work / f"alone_{i}.nc"
        sgd_stage.run_sgd(names[i], c, str(data), str(alone))
        print(f"RESULT sweep point {names[i]}: grouped ({a.backend}) vs alone (numpy):",
              differences(Path(outs[i]), alone), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
