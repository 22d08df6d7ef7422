"""When does label-noise SGD alone collapse Z = ΘXᵀ? A regime of config.yaml run by the
pipeline's own SGD stage (``stages.sgd.run_sgd``, the numba kernel where it applies) for
``--steps`` steps, recorded every ``--every`` steps; prints the CPU seconds it took and, per
record, the median over replicas of σ_k/σ_1 (k = 2, 3), the median of the first ``--half``
replicas and the largest, then the first τ from which each median stays below each level.

The noise is a counter-based stream, so a run stopped at any recorded step has these same
records: one long run tells what every shorter step budget gives. docs/performance.md
("fig1a's step budget") has the run behind fig1a's budget:

    OMP_NUM_THREADS=1 python benchmarks/sgd_collapse.py --regime fig1a --steps 6e7 --every 5e5
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from simbias import storage
from simbias.config import load_schema, validate_config
from simbias.config_job import job_config
from simbias.config_yaml import read_config_yaml
from simbias.stages.data import make_data
from simbias.stages.sgd import run_sgd

LEVELS = (1e-2, 3e-3)


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def first_below_for_good(x: np.ndarray, level: float) -> int | None:
    """Index of the first record from which ``x`` stays ≤ ``level`` (None if it ends above)."""
    above = np.nonzero(x > level)[0]
    if above.size == 0:
        return 0
    return int(above[-1]) + 1 if above[-1] + 1 < x.size else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--regime", default="fig1a")
    ap.add_argument("--steps", type=float, required=True)
    ap.add_argument("--every", type=float, required=True, help="record every this many steps")
    ap.add_argument("--replicas", type=int, help="default: the regime's")
    ap.add_argument("--half", type=int, default=16, help="also the median of the first this many replicas")
    args = ap.parse_args()
    raw = read_config_yaml(Path(args.config))
    reg = raw["regimes"][args.regime]
    steps = int(args.steps)
    reg["sgd"] = dict(reg.get("sgd", {}), steps=steps, linear_points=steps // int(args.every) + 1)
    if args.replicas:
        reg["replicas"] = args.replicas
    cfg = job_config(validate_config(raw, load_schema())["regimes"][args.regime])
    with tempfile.TemporaryDirectory() as tmp:
        make_data(args.regime, cfg, f"{tmp}/data.nc")
        c0, t0 = cpu_seconds(), time.monotonic()
        run_sgd(args.regime, cfg, f"{tmp}/data.nc", f"{tmp}/sgd.nc")
        cpu, wall = cpu_seconds() - c0, time.monotonic() - t0
        ds = storage.open_dataset(f"{tmp}/sgd.nc")
    R = cfg["replicas"]
    print(
        f"{args.regime}: {R} replicas x {steps:.3g} steps, kernel {ds.attrs.get('kernel')}: "
        f"{cpu:.1f} CPU-s ({R * steps / cpu:.3g} replica-steps per CPU-second), {wall:.1f} s wall"
    )
    sv = ds["feature_sv"].values
    ratio = sv[..., 1:3] / sv[..., :1]  # (R, T, 2): σ2/σ1, σ3/σ1
    med, half, top = np.median(ratio, axis=0), np.median(ratio[: args.half], axis=0), ratio.max(axis=0)
    step, tau = ds["step"].values, ds["tau"].values
    print("step        tau     median s2/s1  first-half  largest     median s3/s1  largest")
    for i in np.nonzero(step % int(args.every) == 0)[0]:
        print(
            f"{step[i]:<10.4g} {tau[i]:<7.4g} {med[i, 0]:<13.3g} {half[i, 0]:<11.3g} {top[i, 0]:<11.3g} "
            f"{med[i, 1]:<13.3g} {top[i, 1]:.3g}"
        )
    for level in LEVELS:
        for name, x in (
            ("median s2/s1", med[:, 0]),
            ("largest s2/s1", top[:, 0]),
            ("median s3/s1", med[:, 1]),
        ):
            i = first_below_for_good(x, level)
            at = "never" if i is None else f"from step {step[i]:.4g} (tau {tau[i]:.4g}) on"
            print(f"{name} <= {level:g}: {at}")


if __name__ == "__main__":
    main()
