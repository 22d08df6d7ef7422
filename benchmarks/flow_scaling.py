"""Seconds per replica for the manifold flow to ‖∇_M F‖ ≤ tol: today's integrators against the dense one.

One JSON line per size. Every measurement runs in a fresh child process pinned to one
core (``sched_setaffinity``) with one BLAS thread, after a warm-up flow there with each
integrator it may use (numba compilation, kernel loading and imports excluded). Problems: unit-norm Uniform[0, 1] data, Uniform[0, 1]
labels, w = 1, θ0 ~ N(0, 0.1²) (retracted onto M first), φ = z³ + 0.1z; draw s uses data seed s,
label seed 1000 + s and init seed 2000 + s. ``new``: :func:`simbias.flow.run_flow` as the
pipeline runs it (``integrator="auto"``: CVODE for m·rank X ≤ ``flow.CVODE_MAX_UNKNOWNS``,
else StructuredBDF; the row's ``integrator`` says which); ``bdf``: the same with
StructuredBDF forced, and ``cvode``, CVODE forced: the one ``new`` did not choose is run too
where m·r ≤ ``--other-max-mr``; ``old``:
:func:`simbias.flow_reference.run_flow_dense` (the integrator before both), run where
m·d ≤ ``--old-max-md``. ``rss_mb``: the child's peak resident memory minus its resident
memory after the warm-up, in MB. ``ratio``: old seconds / new seconds (``ratio_bdf``, ``ratio_cvode``: bdf
or cvode seconds / new seconds), measured one after the other. Sizes:

- ``fig1a``: ``--draws`` draws of (10, 3, 3), badly conditioned ones (small μ) included;
- ``(50, 20, 10)``, ``(100, 30, 15)``, ``(256, 64, 32)``;
- ``--scaling``: m = 25 … 400 at (d, n) = (20, 10), and n = 5 … 40 at m = 50, d = 2n;
- ``--crossover``: sizes around ``flow.CVODE_MAX_UNKNOWNS`` (m·r from 30 to 400), both integrators.

Run: ``python benchmarks/flow_scaling.py [--draws 20] [--old-max-md 3000] [--scaling] [--crossover]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from simbias import flow

# m·r from 30 to 400 around flow.CVODE_MAX_UNKNOWNS (r = min(d, n))
CROSSOVER = ((10, 3, 3), (20, 5, 5), (30, 5, 5), (20, 10, 8), (25, 10, 8), (30, 10, 8), (40, 10, 10))


def problem(m: int, d: int, n: int, seed: int):
    from simbias import theory
    from simbias.activations import OddPower
    from simbias.data import make_inputs, make_labels

    act = OddPower(1, 0.1)
    X = make_inputs(n, d, {"distribution": "uniform", "low": 0, "high": 1, "normalize": True, "seed": seed})
    y = make_labels(n, {"distribution": "uniform", "low": 0, "high": 1, "seed": 1000 + seed})
    w = np.ones(m)
    theta = 0.1 * np.random.default_rng(2000 + seed).standard_normal((m, d))
    zs = theory.target_z(act, y, w)
    return act, theta, X, y, w, zs, theory.min_sharpness(act, zs, X, w)


def child(which: str, m: int, d: int, n: int, seed: int, tol: float) -> None:
    """One timed flow in this process, printed as JSON."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from threadpoolctl import threadpool_limits

    from simbias import flow, flow_reference, theory

    runs = {
        "new": flow.run_flow,
        "bdf": lambda *a, **k: flow.run_flow(*a, integrator="bdf", **k),
        "cvode": lambda *a, **k: flow.run_flow(*a, integrator="cvode", **k),
        "old": flow_reference.run_flow_dense,
    }
    run = runs[which]
    with threadpool_limits(1):
        act, theta, X, y, w, zs, Fs = problem(10, 3, 3, 99)  # warm-up: imports, numba compilation
        if which == "old":
            run(act, theta, X, y, w, tol=tol, z_star=zs, F_star=Fs)
        else:  # both integrators: "new" picks either by size, and each loads its own kernels
            for it in ("cvode", "bdf"):
                flow.run_flow(act, theta, X, y, w, tol=tol, z_star=zs, F_star=Fs, integrator=it)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        act, theta, X, y, w, zs, Fs = problem(m, d, n, seed)
        t0 = time.perf_counter()
        res = run(act, theta, X, y, w, tol=tol, z_star=zs, F_star=Fs)
        secs = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {
        "seconds": secs,
        "status": res.status,
        "integrator": res.integrator,
        "nfev": res.nfev,
        "tau_end": res.tau_end,
        "mu": theory.gram_min_eig(X),
        "z_dist": float(np.max(np.abs(res.theta_end @ X.T - zs))),
        "rss_mb": max(peak - base, 0) / 1024,
    }
    print(json.dumps(out))


def measure(which: str, m: int, d: int, n: int, seed: int, tol: float) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    args = [sys.executable, __file__, "--child", which, str(m), str(d), str(n), str(seed), "--tol", str(tol)]
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def row(label: str, m: int, d: int, n: int, seeds: list[int], tol: float, old: bool, other: str) -> dict:
    """``other``: "bdf" or "cvode", the integrator ``new`` did not choose, run too; "" for none."""
    r: dict = {"size": label, "m": m, "d": d, "n": n, "m_d": m * d, "draws": len(seeds)}
    for which in ("new",) + ((other,) if other else ()) + (("old",) if old else ()):
        runs = [measure(which, m, d, n, s, tol) for s in seeds]
        secs = np.array([x["seconds"] for x in runs])
        r[which] = {
            "median_s": round(float(np.median(secs)), 4),
            "max_s": round(float(secs.max()), 4),
            "nfev_median": int(np.median([x["nfev"] for x in runs])),
            "us_per_fev": round(float(np.median(secs / np.maximum([x["nfev"] for x in runs], 1))) * 1e6, 1),
            "rss_mb_max": round(max(x["rss_mb"] for x in runs), 1),
            "converged": sum(x["status"] == "converged" for x in runs),
            "integrator": sorted({x["integrator"] for x in runs}),
            "z_dist_max": max(x["z_dist"] for x in runs),
        }
        r["mu_min"] = min(x["mu"] for x in runs)
    if other:
        r[f"ratio_{other}_median"] = round(r[other]["median_s"] / r["new"]["median_s"], 2)
        r[f"ratio_{other}_max"] = round(r[other]["max_s"] / r["new"]["max_s"], 2)
    if old:
        r["ratio_median"] = round(r["old"]["median_s"] / r["new"]["median_s"], 1)
        r["ratio_max"] = round(r["old"]["max_s"] / r["new"]["max_s"], 1)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", nargs=5, metavar=("WHICH", "M", "D", "N", "SEED"))
    ap.add_argument("--tol", type=float, default=1e-8)
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--old-max-md", type=int, default=3000, help="run the dense integrator up to this m·d")
    ap.add_argument("--other-max-mr", type=int, default=400, help="run the other integrator up to this m·r")
    ap.add_argument("--scaling", action="store_true", help="also the rows of cost against m and n")
    ap.add_argument("--crossover", action="store_true", help="also sizes around the integrator switch")
    ap.add_argument("--only", default="", help="size labels to run, separated by ';' (default: all)")
    args = ap.parse_args()
    if args.child:
        which, m, d, n, seed = args.child
        child(which, int(m), int(d), int(n), int(seed), args.tol)
        return
    sizes = [("fig1a", 10, 3, 3, list(range(args.draws)))]
    sizes += [(f"({m}, {d}, {n})", m, d, n, [0]) for m, d, n in ((50, 20, 10), (100, 30, 15), (256, 64, 32))]
    if args.scaling:
        sizes += [(f"m-scaling ({m}, 20, 10)", m, 20, 10, [0]) for m in (25, 50, 100, 200, 400)]
        sizes += [(f"n-scaling (50, {2 * n}, {n})", 50, 2 * n, n, [0]) for n in (5, 10, 20, 40)]
    if args.crossover:
        sizes += [(f"crossover ({m}, {d}, {n})", m, d, n, [0]) for m, d, n in CROSSOVER]
    only = {s.strip() for s in args.only.split(";") if s.strip()}
    for label, m, d, n, seeds in sizes:
        if only and label not in only:
            continue
        mr = m * min(d, n)  # m·rank X for these data (full rank)
        other = (
            {"cvode": "bdf", "bdf": "cvode"}[flow.choose_integrator(mr)] if mr <= args.other_max_mr else ""
        )
        print(json.dumps(row(label, m, d, n, seeds, args.tol, m * d <= args.old_max_md, other)), flush=True)


if __name__ == "__main__":
    main()
