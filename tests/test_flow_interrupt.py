"""The flow job stops at once on Ctrl-C or SIGTERM and resumes from the replicas it finished.

The end-to-end tests send a real signal to a real `snakemake` run while its run_flow job is
half-way through its replicas (two worker processes)."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from test_reliability import resolved

from simbias import flow, storage
from simbias.stages.data import make_data
from simbias.stages.flow import run_flow_stage
from simbias.stages.sgd import run_sgd

REPO = Path(__file__).resolve().parents[1]


def staged(folder: Path, cfg: dict) -> dict[str, Path]:
    p = {k: folder / f"{k}.nc" for k in ("data", "sgd", "flow")}
    make_data("r", cfg, p["data"])
    run_sgd("r", cfg, p["data"], p["sgd"])
    return p


def counting_run_flow(monkeypatch, stop_at: int | None = None) -> list[int]:
    """Count run_flow calls; raise KeyboardInterrupt (as Ctrl-C would) on call ``stop_at``."""
    calls: list[int] = []
    real = flow.run_flow

    def wrapped(*a, **kw):
        calls.append(1)
        if stop_at is not None and len(calls) == stop_at:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(flow, "run_flow", wrapped)
    return calls


def test_interrupted_flow_resumes_from_finished_replicas_and_writes_the_same_file(tmp_path, monkeypatch):
    cfg = resolved(replicas=5)
    p = staged(tmp_path, cfg)
    run_flow_stage("r", cfg, p["data"], p["sgd"], tmp_path / "ref.nc")  # uninterrupted
    ck = tmp_path / "ckpt" / "r" / "run_flow"
    with monkeypatch.context() as mp:
        counting_run_flow(mp, stop_at=3)
        with pytest.raises(KeyboardInterrupt):
            run_flow_stage("r", cfg, p["data"], p["sgd"], p["flow"], checkpoint_path=str(ck))
    assert not p["flow"].exists()
    assert len(list(ck.glob("replica-*.npz"))) == 2
    calls = counting_run_flow(monkeypatch)
    run_flow_stage("r", cfg, p["data"], p["sgd"], p["flow"], checkpoint_path=str(ck))
    assert len(calls) == 3  # only the replicas not yet finished
    xr.testing.assert_equal(storage.open_dataset(p["flow"]), storage.open_dataset(tmp_path / "ref.nc"))
    assert not ck.exists() and not ck.parent.exists()  # cleaned up once flow.nc is written


def test_checkpoint_of_another_run_is_not_used(tmp_path, monkeypatch):
    cfg = resolved(replicas=3)
    p = staged(tmp_path, cfg)
    ck = tmp_path / "ckpt" / "run_flow"
    with monkeypatch.context() as mp:
        counting_run_flow(mp, stop_at=3)
        with pytest.raises(KeyboardInterrupt):
            run_flow_stage("r", cfg, p["data"], p["sgd"], p["flow"], checkpoint_path=str(ck))
    assert len(list(ck.glob("replica-*.npz"))) == 2
    other = resolved(replicas=3, flow={"records": 20, "tol": 1e-9})
    calls = counting_run_flow(monkeypatch)
    run_flow_stage("r", other, p["data"], p["sgd"], p["flow"], checkpoint_path=str(ck))
    assert len(calls) == 3


def default_sigint() -> None:
    """A terminal's default SIGINT for the child, even when pytest itself was started in the
    background (a shell's `&` sets SIGINT to ignored, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def job_processes(work: Path) -> list[int]:
    """Live processes whose command line mentions the work folder (Snakemake, the job, its workers)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().decode(errors="replace")
                state = (d / "stat").read_text().split()[2]
            except OSError:
                continue
            if str(work) in cmd and state != "Z":
                pids.append(int(d.name))
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find left-over processes")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_one_signal_stops_a_snakemake_flow_job_at_once_and_a_rerun_resumes(tmp_path, sig):
    work = tmp_path / "work"
    work.mkdir()
    reg = {"m": 20, "d": 8, "n": 4, "eta": 0.05, "sigma": 0.2, "replicas": 64}  # a flow of seconds
    reg["sgd"] = {"steps": 200, "log_points": 5, "linear_points": 2}
    reg["flow"] = {"records": 20}
    (work / "config.yaml").write_text(yaml.safe_dump({"regimes": {"r": reg}}))
    target = "results/r/flow.nc"
    ck = work / "results" / ".checkpoints" / "r" / "run_flow"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work), "--cores", "2"]
    proc = subprocess.Popen(
        cmd + [target],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=default_sigint,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and not any(ck.glob("replica-*.npz")):
            time.sleep(0.05)
        assert proc.poll() is None and not (work / target).exists(), "the signal must land during run_flow"
        os.killpg(proc.pid, sig)  # as a terminal's Ctrl-C (SIGINT) or a batch system (SIGTERM) does: once
        t0 = time.monotonic()
        out, _ = proc.communicate(timeout=60)
        stopped_after = time.monotonic() - t0
    finally:
        if proc.poll() is None:  # it hangs: end it (and its job) for good
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert stopped_after < 15, (stopped_after, out[-3000:])
    assert not (work / target).exists(), out[-3000:]
    for _ in range(50):  # no job or worker process is left running
        if not job_processes(work):
            break
        time.sleep(0.1)
    assert job_processes(work) == []
    finished = len(list(ck.glob("replica-*.npz")))
    assert 1 <= finished < 64
    if sig != signal.SIGINT:
        return  # the rerun below is the same after either signal: once is enough
    if (work / ".snakemake" / "locks").is_dir() and any((work / ".snakemake" / "locks").iterdir()):
        subprocess.run(cmd + ["--unlock"], cwd=work, capture_output=True, check=True)
    rerun = subprocess.run(cmd + [target], cwd=work, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = (work / "logs" / "r" / "run_flow.log").read_text()
    resumed = int(re.search(r"resuming the flow: (\d+) replica", log).group(1))
    assert resumed >= finished
    assert not ck.exists()
    # the file is whole; that a resumed file equals an uninterrupted one is checked above
    fl = storage.open_dataset(work / target)
    assert fl.sizes["replica"] == 64 and np.isfinite(fl["theta_end"].values).all()


def test_a_finished_run_exits_at_once_though_the_profile_rate_limits_jobs_per_minute(tmp_path):
    """The default profile's max-jobs-per-timespan (1000/60s) leaves one timer per scheduling
    round; Python would wait up to a minute for them at exit unless the Snakefile cancels them."""
    profile = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    assert profile["max-jobs-per-timespan"].endswith("/60s")  # the case this test is about
    work = tmp_path / "work"
    work.mkdir()
    reg = {"m": 4, "d": 2, "n": 2, "eta": 0.05, "sigma": 0.2, "replicas": 2}
    (work / "config.yaml").write_text(yaml.safe_dump({"regimes": {"r": reg}}))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work)]
    proc = subprocess.Popen(
        cmd + ["results/r/data.nc"], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        lines = []
        for line in proc.stdout:  # Snakemake's own end-of-run line, then it should exit
            lines.append(line)
            if "(100%) done" in line:
                break
        t0 = time.monotonic()
        proc.communicate(timeout=120)
        exited_after = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(lines)[-3000:]
    assert exited_after < 15, exited_after
