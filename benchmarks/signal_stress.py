"""Signal stress test of the flow stage: SIGINT or SIGTERM at random moments, counting hangs.

Each run starts a small flow job (48 replicas) (two worker processes, as Snakemake's run_flow job runs it) in
its own session, sends one signal at a random moment of its life (start-up, mid-task, workers
idle at the tail, writing flow.nc) to the job's main process or to its whole process group, and
waits at most ``--timeout`` seconds (30) for it to end. It then checks what a user relies on:

- ``hang``: the job did not end within the timeout (it is then killed with SIGKILL);
- ``left``: a process of the job (a worker) still alive after the job ended;
- ``partial``: a flow.nc that is not whole, a temporary file left, or exit 0 without flow.nc;
- ``bad_ckpt``: a flow checkpoint file that cannot be read back;
- ``deadline``: the job did end, but only by the safety deadline (SIGALRM, simbias.signals): a
  stop that would have hung without it.

With ``--via snakemake`` the job runs under a real ``snakemake`` instead, and the signal also goes
to Snakemake's process alone (``snakemake-only``). One JSON line per run, then a table::

    python benchmarks/signal_stress.py --runs 200                  # the flow job itself
    python benchmarks/signal_stress.py --runs 40 --via snakemake   # under Snakemake

Exit status 1 when any run hung, needed the deadline, left a process behind or left partial output.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
REGIME = {
    "m": 20,
    "d": 8,
    "n": 4,
    "eta": 0.05,
    "sigma": 0.2,
    "replicas": 48,
    "sgd": {"steps": 200, "log_points": 5, "linear_points": 2},
    "flow": {"records": 20},
}


def job_cfg() -> dict:
    from simbias.config import validate_config
    from simbias.config_job import job_config

    return job_config(validate_config({"regimes": {"r": REGIME}})["regimes"]["r"])


def child(folder: Path) -> None:
    """The flow job, as workflow/scripts/run_flow.py runs it (logs.to_file installs its handlers)."""
    import faulthandler

    from simbias import logs
    from simbias.stages.flow import run_flow_stage

    # where a hung job stands: the parent sends SIGUSR1 before it kills the job (stacks.txt)
    faulthandler.register(signal.SIGUSR1, file=open(folder / "stacks.txt", "a"), all_threads=True)
    logs.to_file(str(folder / "run_flow.log"))
    run_flow_stage(
        "r", job_cfg(), folder / "data.nc", folder / "sgd.nc", str(folder / "flow.nc"), str(folder / "ckpt")
    )


def stage_inputs(folder: Path) -> None:
    from simbias.stages.data import make_data
    from simbias.stages.sgd import run_sgd

    cfg = job_cfg()
    make_data("r", cfg, folder / "data.nc")
    run_sgd("r", cfg, folder / "data.nc", folder / "sgd.nc")


def processes_of(marker: str) -> list[int]:
    """Live (not zombie) processes whose command line contains ``marker``."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().decode(errors="replace")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker in cmd and state != "Z":
            pids.append(int(d.name))
    return pids


def job_pid(session_pid: int, marker: str) -> int:
    """The flow job's main process under Snakemake: the oldest process running run_flow.py."""
    found = [p for p in processes_of(marker) if p != session_pid and _is_job(p)]
    return min(found) if found else session_pid


def _is_job(pid: int) -> bool:
    try:
        return "run_flow.py" in (Path("/proc") / str(pid) / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def checkpoint_readable(ckpt: Path) -> bool:
    for path in ckpt.glob("replica-*.npz"):
        try:
            with np.load(path, allow_pickle=False) as z:
                [z[k] for k in z.files]
        except Exception:
            return False
    return True


def start(folder: Path, via: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="2")
    if via == "job":
        cmd = [sys.executable, __file__, "--child", str(folder)]
    else:
        cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(folder)]
        cmd += ["--cores", "2", "results/r/flow.nc"]
    return subprocess.Popen(
        cmd,
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for_moment(proc: subprocess.Popen, ckpt: Path, after_replicas: int, delay: float) -> None:
    """Wait until ``after_replicas`` replicas are checkpointed (0: from the start), then ``delay`` s."""
    deadline = time.monotonic() + 300
    while after_replicas and proc.poll() is None and time.monotonic() < deadline:
        if len(list(ckpt.glob("replica-*.npz"))) >= after_replicas:
            break
        time.sleep(0.005)
    time.sleep(delay)


def complete(out: Path) -> bool:
    """flow.nc holds every replica (a file the job finished writing)."""
    from simbias import storage

    try:
        return storage.open_dataset(out).sizes["replica"] == REGIME["replicas"]
    except Exception:
        return False


def one_run(
    base: Path, i: int, via: str, sig: int, target: str, after: int, delay: float, timeout: float
) -> dict:
    folder = base / f"run{i:04d}"
    folder.mkdir()
    if via == "job":
        for name in ("data.nc", "sgd.nc"):
            os.link(base / "inputs" / name, folder / name)
        out, ckpt = folder / "flow.nc", folder / "ckpt"
    else:
        (folder / "config.yaml").write_text(yaml.safe_dump({"regimes": {"r": REGIME}}))
        out, ckpt = (
            folder / "results" / "r" / "flow.nc",
            folder / "results" / ".checkpoints" / "r" / "run_flow",
        )
    marker = str(folder)
    proc = start(folder, via)
    wait_for_moment(proc, ckpt, after, delay)
    finished_before = proc.poll() is not None
    if not finished_before:
        if target == "group":
            os.killpg(proc.pid, sig)
        elif target == "snakemake-only":
            os.kill(proc.pid, sig)
        else:  # the job's main process alone
            os.kill(job_pid(proc.pid, marker) if via == "snakemake" else proc.pid, sig)
    t0 = time.monotonic()
    try:
        proc.wait(timeout=timeout)
        hang = False
    except subprocess.TimeoutExpired:
        hang = True
        for p in processes_of(marker):
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGUSR1)
        time.sleep(1)
        stacks = folder / "stacks.txt"
        if stacks.exists():
            print(f"run {i} hung; its stacks:\n{stacks.read_text()}", file=sys.stderr, flush=True)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    took = time.monotonic() - t0
    left = []
    for _ in range(50):
        left = processes_of(marker)
        if not left:
            break
        time.sleep(0.1)
    for p in left:  # clean up for the next run
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    ok_exit = proc.returncode == 0  # a job that ends 0 wrote flow.nc; one that fails may have, just
    # before the signal (Snakemake then deletes it): either way the file must be whole
    temporaries = [p.name for p in out.parent.glob(".*.tmp")]
    partial = (out.exists() and not complete(out)) or bool(temporaries) or (ok_exit and not out.exists())
    return {
        "run": i,
        "via": via,
        "signal": signal.Signals(sig).name,
        "target": target,
        "after_replicas": after,
        "delay_s": round(delay, 3),
        "finished_before_signal": finished_before,
        "returncode": proc.returncode,
        "seconds_to_end": round(took, 2),
        "hang": hang,
        "deadline": proc.returncode == -signal.SIGALRM,
        "left": len(left),
        "partial": partial,
        "bad_ckpt": not checkpoint_readable(ckpt),
        "replicas_checkpointed": len(list(ckpt.glob("replica-*.npz"))),
        "flow_nc": out.exists(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--via", choices=("job", "snakemake"), default="job")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(Path(args.child))
        return 0
    rng = random.Random(args.seed)
    targets = ["job", "group"] + (["snakemake-only"] if args.via == "snakemake" else [])
    with tempfile.TemporaryDirectory(prefix="signal_stress_") as tmp:
        base = Path(tmp)
        (base / "inputs").mkdir()
        stage_inputs(base / "inputs")
        full = base / "full"  # one uninterrupted run: its length sets the range of signal moments
        full.mkdir()
        if args.via == "job":
            for name in ("data.nc", "sgd.nc"):
                os.link(base / "inputs" / name, full / name)
        else:
            (full / "config.yaml").write_text(yaml.safe_dump({"regimes": {"r": REGIME}}))
        t0 = time.monotonic()
        p = start(full, args.via)
        p.wait()
        length = time.monotonic() - t0
        print(json.dumps({"calibration_run_s": round(length, 2), "returncode": p.returncode}), flush=True)
        counts: collections.Counter = collections.Counter()
        by: dict = collections.defaultdict(collections.Counter)
        for i in range(1, args.runs + 1):
            sig = rng.choice([signal.SIGINT, signal.SIGTERM])
            target = rng.choice(targets)
            R, u = REGIME["replicas"], rng.random()
            if u < 1 / 3:  # anywhere in the job's life: start-up, flows, writing, after
                after, delay = 0, rng.uniform(0.0, 1.1 * length)
            elif u < 2 / 3:  # mid-run: some replicas finished, workers busy
                after, delay = rng.randint(1, R - 3), rng.uniform(0.0, 0.05)
            else:  # the tail: workers idle or finishing, flow.nc being written
                after, delay = rng.randint(R - 2, R), rng.uniform(0.0, 0.3)
            row = one_run(base, i, args.via, sig, target, after, delay, args.timeout)
            print(json.dumps(row), flush=True)
            key = (row["signal"], row["target"])
            by[key]["runs"] += 1
            for k in ("hang", "deadline", "left", "partial", "bad_ckpt", "finished_before_signal"):
                by[key][k] += int(bool(row[k]))
                counts[k] += int(bool(row[k]))
            by[key]["max_s"] = max(by[key]["max_s"], row["seconds_to_end"])
            counts["runs"] += 1
    print(
        f"\n{counts['runs']} runs via {args.via}; signal moments: a third uniform in [0, {1.1 * length:.1f}] s, "
        f"a third after 1..{REGIME['replicas'] - 3} replicas, a third after the last 3 or later"
    )
    print(
        f"{'signal':8} {'target':15} {'runs':>5} {'done first':>10} {'hang':>5} {'deadline':>8} {'left':>5} {'partial':>7} "
        f"{'bad ckpt':>8} {'max s':>6}"
    )
    for (s, t), c in sorted(by.items()):
        print(
            f"{s:8} {t:15} {c['runs']:5d} {c['finished_before_signal']:10d} {c['hang']:5d} {c['deadline']:8d} {c['left']:5d} "
            f"{c['partial']:7d} {c['bad_ckpt']:8d} {c['max_s']:6.1f}"
        )
    bad = counts["hang"] + counts["deadline"] + counts["left"] + counts["partial"] + counts["bad_ckpt"]
    print(
        f"hangs: {counts['hang']} of {counts['runs']}; ended only by the deadline: {counts['deadline']}; "
        f"left processes: {counts['left']}; "
        f"partial outputs: {counts['partial']}; unreadable checkpoints: {counts['bad_ckpt']}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
