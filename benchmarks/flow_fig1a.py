"""Seconds for the flow continuation of one fig1a-size replica to ‖∇_M F‖ ≤ 1e-8.

Draws `--draws` independent fig1a-size problems (m = 10, d = n = 3, Uniform[0, 1] data
normalised, Uniform[0, 1] labels, N(0, 0.1²) init, ν = 0.1), so badly conditioned data
(small μ = λ_min(XXᵀ)) are included as they come. Prints one JSON line per draw and a
summary line. Run on one core: `OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/flow_fig1a.py`.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from simbias import flow, theory
from simbias.activations import OddPower
from simbias.data import make_inputs, make_labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--tol", type=float, default=1e-8)
    args = ap.parse_args()
    act = OddPower(1, 0.1)
    secs, mus = [], []
    for s in range(args.draws):
        X = make_inputs(3, 3, {"distribution": "uniform", "low": 0, "high": 1, "normalize": True, "seed": s})
        y = make_labels(3, {"distribution": "uniform", "low": 0, "high": 1, "seed": 1000 + s})
        w = np.ones(10)
        theta = 0.1 * np.random.default_rng(2000 + s).standard_normal((10, 3))
        zs = theory.target_z(act, y, w)
        t0 = time.perf_counter()
        res = flow.run_flow(
            act, theta, X, y, w, tol=args.tol, z_star=zs, F_star=theory.min_sharpness(act, zs, X, w)
        )
        dt = time.perf_counter() - t0
        mu = theory.gram_min_eig(X)
        secs.append(dt)
        mus.append(mu)
        print(
            json.dumps(
                {
                    "draw": s,
                    "mu": mu,
                    "status": res.status,
                    "tau_end": res.tau_end,
                    "z_dist": float(np.max(np.abs(res.theta_end @ X.T - zs))),
                    "seconds": round(dt, 3),
                }
            )
        )
    secs = np.array(secs)
    print(
        json.dumps(
            {
                "summary": True,
                "draws": args.draws,
                "tol": args.tol,
                "median_seconds": float(np.median(secs)),
                "max_seconds": float(secs.max()),
                "min_mu": float(min(mus)),
            }
        )
    )


if __name__ == "__main__":
    main()
