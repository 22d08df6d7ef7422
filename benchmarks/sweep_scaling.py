"""What an (η, σ) sweep costs in the pipeline, grouped jobs against one job per grid point.

Every sweep is on fig1a's problem (m, d, n = 10, 3, 3, data seed 6) with 16 replicas and 10⁵ SGD
steps per grid point, η log-spaced in [0.01, 0.1] and σ in [0.01, 0.3], given to Snakemake as the
only regime (``--replace-workflow-config --config regimes_file=...``). ``new`` runs it with the
default ``group_size`` (64 grid points per job and stage, the points of a job in one SGD call);
``old`` with ``group_size: 1``, one job per grid point and stage, as before grouping;
``before`` is the workflow of revision ``BEFORE`` (the pipeline when the sweep issue was filed:
one regime per grid point with all its jobs, per-figure jobs, SciPy's linkage per record), a
``git archive`` of it run with its own library (``PYTHONPATH``) and default profile. Each
measurement is a fresh Snakemake process timed by ``/usr/bin/time``: user + system CPU seconds of
it and all its jobs, wall seconds, peak memory of the largest process, and the CPU seconds the
rest of the machine used meanwhile (``other_cpu_s``, from ``/proc/stat``: other work on shared cores).

- ``dry``: ``snakemake -n`` (the DAG alone);
- ``run``: the whole sweep (data, SGD, flow, comparison, tables, phase diagram) from an empty
  folder on ``--cores`` cores, after an untimed one-point warm-up (numba's compiled kernel cached).

One JSON line per measurement (also appended to ``--out``); ``--table FILE`` prints the Markdown
table of a file of such lines, with the old/new ratios. Keep each locked run short, e.g.
``flock /tmp/bench.lock python benchmarks/sweep_scaling.py --what run --points 100 --tree new``.
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


def regimes_file(folder: Path, points: int, steps: int, group_size: int | None, replicas: int = 16) -> Path:
    eta, sigma = grid(points)
    path = folder / f"sweep{points}_{steps}_{replicas}_{group_size}.yaml"
    group = "" if group_size is None else f", group_size: {group_size}"
    path.write_text(
        "regimes:\n  sw:\n    m: 10\n    d: 3\n    n: 3\n    eta: 0.05\n    sigma: 0.03\n"
        f"    replicas: {replicas}\n    data: {{seed: 6}}\n    sgd: {{steps: {steps}}}\n"
        f"    sweep: {{mode: product, eta: {eta}, sigma: {sigma}{group}}}\n"
    )
    return path


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (every process, any nice), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return math.nan
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def timed_snakemake(work: Path, regimes: Path, extra: list[str], tree: Path = REPO) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if tree != REPO:  # an older revision's workflow runs its own library
        env["PYTHONPATH"] = str(tree / "src")
    busy0 = machine_busy_s()
    stats = work / ".time"
    cmd = ["/usr/bin/time", "-o", str(stats), "-f", "%U %S %e %M"]
    cmd += [sys.executable, "-m", "snakemake", "-s", str(tree / "Snakefile"), "-d", str(work)]
    cmd += ["--replace-workflow-config", "--config", f"regimes_file={regimes}", *extra]
    if "-n" not in extra:  # Snakemake's scheduler rounds (docs/performance.md, "Sweeps")
        cmd += ["--max-jobs-per-timespan", TIMESPAN]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    busy = machine_busy_s() - busy0
    user, system, wall, rss = stats.read_text().split()[-4:]
    lines = (proc.stdout + proc.stderr).splitlines()
    jobs = next((ln.split()[-1] for ln in lines if ln.startswith("total")), None)
    return {
        "cpu_s": round(float(user) + float(system), 2),
        "wall_s": float(wall),
        "peak_mb": round(int(rss) / 1024),
        "jobs": int(jobs) if jobs else None,
        # what the rest of the machine ran meanwhile (other users' work shares the cores)
        "other_cpu_s": round(busy - float(user) - float(system), 1),
    }


# Snakemake re-evaluates its schedule one timespan after each round, and each round starts another
# such timer: with its default (100/1s) the rounds per second grow with the jobs finished so far
TIMESPAN = "1000/60s"
TREES = {"new": None, "old": 1, "before": None}  # group_size: the default, or one job per point
BEFORE = "7ce2a1c"  # the workflow before grouped sweeps (and before the sweep issue's other changes)


def checkout(rev: str, into: Path) -> Path:
    """The tree of revision ``rev`` (git archive) in ``into``."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def measure(what: str, points: int, tree: str, steps: int, cores: int, keep: Path | None) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="sweep_scaling_"))
    try:
        reg = regimes_file(tmp, points, steps, TREES[tree])
        src = checkout(BEFORE, tmp / "before") if tree == "before" else REPO
        if what == "dry":
            r = timed_snakemake(tmp / "work", reg, ["-n"], src)
        else:
            warm = regimes_file(tmp, 1, 1000, TREES[tree], replicas=2)
            timed_snakemake(tmp / "warm", warm, ["--cores", str(cores)], src)
            work = tmp / "work"
            r = timed_snakemake(work, reg, ["--cores", str(cores)], src)
            phase = work / "results" / "figures" / "sw_phase.png"
            assert phase.exists()
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(phase, keep / f"sw_phase_{points}_{tree}.png")
                if (table := work / "results" / "sweeps" / "sw.csv").exists():  # not at BEFORE
                    shutil.copy(table, keep / f"sw_{points}_{tree}.csv")
                if (work / "benchmarks" / "out").is_dir():  # Snakemake's per-job time and memory
                    shutil.copytree(
                        work / "benchmarks" / "out", keep / f"jobs_{points}_{tree}", dirs_exist_ok=True
                    )
                if (work / "logs" / "sweeps").is_dir():
                    shutil.copytree(
                        work / "logs" / "sweeps", keep / f"logs_{points}_{tree}", dirs_exist_ok=True
                    )
        return {"what": what, "tree": tree, "points": points, "cores": cores, **r}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def table(path: Path) -> str:
    rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    last = {(r["what"], r["points"], r["tree"]): r for r in rows}  # the latest of each
    out = [
        "| measurement | points | jobs old / new | CPU s old | CPU s new | wall s old | wall s new "
        "| old / new (CPU) | old / new (wall) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for what, points in sorted({(w, p) for w, p, _ in last}, key=lambda k: (k[0] != "dry", k[1])):
        old, new = last.get((what, points, "old")), last.get((what, points, "new"))

        def cell(r, k):
            return "–" if r is None else f"{r[k]:g}"

        ratio = "–" if old is None or new is None else f"{old['wall_s'] / new['wall_s']:.1f}×"
        cpu = "–" if old is None or new is None else f"{old['cpu_s'] / new['cpu_s']:.1f}×"
        jobs = f"{cell(old, 'jobs')} / {cell(new, 'jobs')}"
        out.append(
            f"| {what} | {points} | {jobs} | {cell(old, 'cpu_s')} | {cell(new, 'cpu_s')} "
            f"| {cell(old, 'wall_s')} | {cell(new, 'wall_s')} | {cpu} | {ratio} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--what", choices=["dry", "run"], default="dry")
    ap.add_argument("--points", type=int, nargs="*", default=[10, 100, 1000])
    ap.add_argument("--tree", choices=list(TREES), nargs="*", default=list(TREES))
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "sweep_scaling.jsonl")
    ap.add_argument("--keep", type=Path, default=None, help="copy each run's phase diagram and table here")
    ap.add_argument("--table", type=Path, default=None, help="print the table of a JSON-lines file and stop")
    args = ap.parse_args()
    if args.table is not None:
        print(table(args.table))
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for points in args.points:
        for tree in args.tree:
            row = measure(args.what, points, tree, args.steps, args.cores, args.keep)
            print(json.dumps(row), flush=True)
            with open(args.out, "a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
