"""SIGINT and SIGTERM never hang a job (simbias.signals, simbias.flow_pool).

Each signal is sent at a moment chosen by an event the job makes (a checkpoint file appearing),
not after a sleep, so no test here depends on timing luck. benchmarks/signal_stress.py sends
them at random moments over hundreds of runs."""

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from test_reliability import resolved

from simbias import flow_pool, signals, storage
from simbias.activations import OddPower
from simbias.stages.data import make_data
from simbias.stages.sgd import run_sgd

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="Linux: signals, fork and /proc")

FLOW_REGIME = dict(m=20, d=8, n=4, replicas=24, sgd={"steps": 200, "log_points": 5, "linear_points": 2})

# the flow job as workflow/scripts/run_flow.py runs it: logs.to_file installs the stop handlers
JOB = textwrap.dedent(
    """
    import json, sys
    from simbias import logs
    from simbias.stages.flow import run_flow_stage
    folder = sys.argv[1]
    logs.to_file(folder + "/run_flow.log")
    run_flow_stage("r", json.load(open(folder + "/cfg.json")), folder + "/data.nc", folder + "/sgd.nc",
                   folder + "/flow.nc", checkpoint_path=folder + "/ckpt")
    """
)


@pytest.fixture(scope="module")
def flow_inputs(tmp_path_factory):
    import json

    folder = tmp_path_factory.mktemp("flow_inputs")
    cfg = resolved(**FLOW_REGIME)
    make_data("r", cfg, folder / "data.nc")
    run_sgd("r", cfg, folder / "data.nc", folder / "sgd.nc")
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


def live(pgid: int) -> list[int]:
    """Processes of the session ``pgid`` that are alive (not zombies)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(d.name))
    return out


@pytest.mark.parametrize("to", ["group", "job"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("after", ["mid", "tail"])
def test_a_signal_ends_a_flow_job_within_seconds_whatever_its_workers_do(
    tmp_path, flow_inputs, after, sig, to
):
    """Two worker processes; the signal lands after a few replicas (workers busy) or after all
    but one (one worker idle, waiting for a task: where a multiprocessing.Pool's terminate
    could deadlock). The job ends within seconds with nothing written, no process left, and
    every checkpointed replica readable."""
    for name in ("data.nc", "sgd.nc", "cfg.json"):
        os.link(flow_inputs / name, tmp_path / name)
    R = FLOW_REGIME["replicas"]
    ckpt = tmp_path / "ckpt"
    proc = subprocess.Popen(
        [sys.executable, "-c", JOB, str(tmp_path)],
        # the deadline far off, so that a stop that only the deadline ends cannot pass for a clean
        # one however loaded the machine is (a clean stop takes about a second, idle)
        env=dict(os.environ, OMP_NUM_THREADS="2", SIMBIAS_STOP_DEADLINE_S="120"),
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        want = 3 if after == "mid" else R - 1
        deadline = time.monotonic() + 240
        while len(list(ckpt.glob("replica-*.npz"))) < want and proc.poll() is None:
            assert time.monotonic() < deadline, "the flow never got there"
            time.sleep(0.002)
        assert proc.poll() is None and not (tmp_path / "flow.nc").exists(), "the job ended before the signal"
        t0 = time.monotonic()
        os.killpg(proc.pid, sig) if to == "group" else os.kill(proc.pid, sig)
        proc.wait(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode not in (0, -signal.SIGALRM)  # a clean stop, not the deadline's
    assert took < 30, took
    assert not (tmp_path / "flow.nc").exists()
    assert not list(tmp_path.rglob("*.tmp"))
    for _ in range(100):  # the workers die with their parent
        if not live(proc.pid):
            break
        time.sleep(0.05)
    assert live(proc.pid) == []
    saved = sorted(ckpt.glob("replica-*.npz"))
    assert want <= len(saved) <= R  # R: the signal came after the last replica, before flow.nc
    for path in saved:
        with np.load(path, allow_pickle=False) as z:
            assert np.isfinite(z["theta_end"]).all()


def test_a_signal_during_a_write_waits_for_the_file_to_be_whole(tmp_path):
    """A signal that comes while an output is written is raised once the file is in place (so
    netCDF4 is never interrupted under xarray's lock, and no temporary is left)."""
    import xarray as xr

    came = []

    def handler(signum, frame):
        came.append(signum)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    ds = xr.Dataset({"v": ("x", np.arange(5.0))})
    out = tmp_path / "out.nc"
    try:
        with pytest.raises(KeyboardInterrupt):
            with storage.atomic_path(out) as tmp:
                signal.raise_signal(signal.SIGTERM)
                assert came == []  # held while the write goes on
                ds.to_netcdf(tmp, engine="netcdf4")
    finally:
        signal.signal(signal.SIGTERM, old)
    assert came == [signal.SIGTERM]
    assert storage.open_dataset(out)["v"].values.tolist() == list(range(5))
    assert not list(tmp_path.glob("*.tmp"))


def test_a_job_stuck_after_a_signal_is_ended_by_the_deadline(tmp_path):
    """A job whose clean-up hangs (here on a lock it holds itself, as xarray's HDF5 lock could
    be) is ended by SIGALRM at signals.DEADLINE_S; a later signal does not re-arm it."""
    code = textwrap.dedent(
        """
        import os, signal, threading, time
        from simbias import signals
        signals.install_stop_handlers()
        lock = threading.Lock()
        lock.acquire()
        try:
            print(time.monotonic(), flush=True)  # the moment of the signal, on the machine's clock
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(60)
        finally:
            os.kill(os.getpid(), signal.SIGINT)  # ignored: the stop is already under way
            lock.acquire()  # hangs for ever
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    took = time.monotonic() - float(proc.stdout.decode().split()[0])
    assert proc.returncode == -signal.SIGALRM, proc.stderr.decode()[-2000:]
    assert signals.DEADLINE_S - 0.5 < took < signals.DEADLINE_S + 10


def test_a_worker_killed_from_outside_fails_the_run_at_once(small_problem):
    """A worker that dies without its result (OOM killer, kill -9) fails the run with
    WorkerDied naming it, instead of waiting for a result that never comes."""
    act, X, y, w, theta = small_problem
    thetas = np.concatenate([theta] * 4)  # 12 replicas

    def kill_a_worker(r, res, secs):
        workers = multiprocessing.active_children()
        if workers:
            os.kill(workers[0].pid, signal.SIGKILL)

    t0 = time.monotonic()
    with pytest.raises(flow_pool.WorkerDied, match="ended without its result"):
        flow_pool.run_flows(act, thetas, X, y, w, workers=2, on_result=kill_a_worker, tol=1e-8, records=5)
    assert time.monotonic() - t0 < 60
    assert multiprocessing.active_children() == []


def test_workers_give_the_same_results_as_one_process(small_problem):
    act, X, y, w, theta = small_problem
    one = flow_pool.run_flows(act, theta, X, y, w, workers=1, tol=1e-8, records=5)
    two = flow_pool.run_flows(act, theta, X, y, w, workers=2, tol=1e-8, records=5)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a.theta_end, b.theta_end)
        assert a.status == b.status and a.nfev == b.nfev


def test_an_error_in_a_worker_reaches_the_parent(small_problem, monkeypatch):
    act, X, y, w, theta = small_problem

    def broken(*a, **kw):
        raise ValueError("broken flow")

    monkeypatch.setattr(flow_pool.flow, "run_flow", broken)
    monkeypatch.setattr(flow_pool, "_warm_up", lambda act: None)
    with pytest.raises(ValueError, match="broken flow"):
        flow_pool.run_flows(OddPower(1, 0.1), theta, X, y, w, workers=2, tol=1e-8, records=5)
    assert multiprocessing.active_children() == []
