"""What an (η, σ) sweep costs in the pipeline, old workflow against this one, side by side.

Every sweep is on fig1a's problem (m, d, n = 10, 3, 3, data seed 6) with 16 replicas and 10⁵ SGD
steps per grid point, η log-spaced in [0.01, 0.1] and σ in [0.01, 0.3], given to Snakemake as the
only regimes (``--replace-workflow-config --config regimes_file=...``). ``old`` is the workflow
and library at ``--old-rev`` (exported with ``git archive``; its own ``src/`` comes first on
``PYTHONPATH``), ``new`` the working tree. Each measurement is a fresh Snakemake process timed by
``/usr/bin/time``: user + system CPU seconds of it and all its jobs, wall seconds, peak memory.

- ``dry``: ``snakemake -n`` (the DAG alone) for ``--dry-points`` (default 10, 100 and 1000 points);
- ``run``: the whole sweep (data, SGD, flow, comparison, figures, phase diagram) from an empty
  folder on ``--cores`` cores for ``--run-points`` points (default 10; 0 skips it), after an
  untimed one-point warm-up in the same tree (numba's compiled kernel cached).

One JSON line per measurement, then the old/new ratios. Run under the shared lock:
``flock /tmp/s2/bench.lock python benchmarks/sweep_scaling.py [--run-points 10]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def grid(points: int) -> tuple[list[float], list[float]]:
    """η and σ values whose product grid has ``points`` points (as square as it divides)."""
    a = max(d for d in range(1, int(math.isqrt(points)) + 1) if points % d == 0)
    b = points // a
    eta = [float(f"{v:.6g}") for v in np.geomspace(0.01, 0.1, b)]
    sigma = [float(f"{v:.6g}") for v in np.geomspace(0.01, 0.3, a)]
    return eta, sigma


def regimes_file(folder: Path, points: int, steps: int, replicas: int = 16) -> Path:
    eta, sigma = grid(points)
    path = folder / f"sweep{points}_{steps}_{replicas}.yaml"
    path.write_text(
        "regimes:\n  sw:\n    m: 10\n    d: 3\n    n: 3\n    eta: 0.05\n    sigma: 0.03\n"
        f"    replicas: {replicas}\n    data: {{seed: 6}}\n    sgd: {{steps: {steps}}}\n"
        f"    sweep: {{mode: product, eta: {eta}, sigma: {sigma}}}\n"
    )
    return path


def timed_snakemake(tree: Path, work: Path, regimes: Path, extra: list[str], env: dict) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    stats = work / ".time"
    cmd = ["/usr/bin/time", "-o", str(stats), "-f", "%U %S %e %M"]
    cmd += [sys.executable, "-m", "snakemake", "-s", str(tree / "Snakefile"), "-d", str(work)]
    cmd += ["--replace-workflow-config", "--config", f"regimes_file={regimes}", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    user, system, wall, rss = stats.read_text().split()[-4:]
    lines = (proc.stdout + proc.stderr).splitlines()
    jobs = next((ln.split()[-1] for ln in lines if ln.startswith("total")), None)
    return {
        "cpu_s": round(float(user) + float(system), 2),
        "wall_s": float(wall),
        "peak_mb": round(int(rss) / 1024),
        "jobs": int(jobs) if jobs else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old-rev", default="7ce2a1c")
    ap.add_argument("--dry-points", type=int, nargs="*", default=[10, 100, 1000])
    ap.add_argument("--run-points", type=int, default=10)
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sweep_scaling_"))
    old = tmp / "old"
    old.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", args.old_rev], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    trees = {"old": (old, {**os.environ, "PYTHONPATH": str(old / "src")}), "new": (REPO, dict(os.environ))}
    rows = []

    def record(**row) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)

    for points in args.dry_points:
        reg = regimes_file(tmp, points, args.steps)
        for name, (tree, env) in trees.items():
            work = tmp / f"dry_{name}_{points}"
            record(what="dry", tree=name, points=points, **timed_snakemake(tree, work, reg, ["-n"], env))
    if args.run_points:
        reg = regimes_file(tmp, args.run_points, args.steps)
        warm = regimes_file(tmp, 1, 1000, replicas=2)
        for name, (tree, env) in trees.items():
            timed_snakemake(tree, tmp / f"warm_{name}", warm, ["--cores", str(args.cores)], env)
            work = tmp / f"run_{name}"
            r = timed_snakemake(tree, work, reg, ["--cores", str(args.cores)], env)
            assert (work / "results" / "figures" / "sw_phase.png").exists()
            record(what="run", tree=name, points=args.run_points, **r)
            shutil.copy(work / "results" / "figures" / "sw_phase.png", tmp / f"sw_phase_{name}.png")
    for what, points in {(r["what"], r["points"]) for r in rows}:
        pair = {r["tree"]: r for r in rows if r["what"] == what and r["points"] == points}
        if len(pair) == 2:
            print(
                json.dumps(
                    {
                        "what": what,
                        "points": points,
                        "cpu_ratio_old_over_new": round(pair["old"]["cpu_s"] / pair["new"]["cpu_s"], 2),
                        "wall_ratio_old_over_new": round(pair["old"]["wall_s"] / pair["new"]["wall_s"], 2),
                    }
                )
            )
    print(json.dumps({"folder": str(tmp)}))


if __name__ == "__main__":
    main()
