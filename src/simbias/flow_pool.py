"""Many replicas' flows at once: :func:`run_flows` runs :func:`simbias.flow.run_flow` for every
replica, in forked worker processes (one per thread the stage has), with one BLAS thread each.
It stops at once on Ctrl-C or SIGTERM and saves each finished replica to a checkpoint
(:mod:`simbias.flow_checkpoint`), so a rerun resumes (docs/performance.md, "Worker processes,
Ctrl-C, checkpoints").
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable

import numpy as np

from . import flow
from .activations import OddPower

log = logging.getLogger(__name__)


def _flow_task(args) -> tuple[int, flow.FlowResult, float]:
    """One replica's flow (a pool task): (replica, result, seconds)."""
    r, act, theta, X, y, w, kw = args
    t0 = time.monotonic()
    return r, flow.run_flow(act, theta, X, y, w, **kw), time.monotonic() - t0


def _worker_init() -> None:
    """Pool workers leave SIGINT to the parent (which terminates them) and die with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with contextlib.suppress(Exception):  # Linux: SIGKILL when the parent dies, even by kill -9
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Terminated(KeyboardInterrupt):
    """SIGTERM during :func:`run_flows`, raised like Ctrl-C so the same clean-up runs."""


@contextlib.contextmanager
def _sigterm_interrupts():
    """In the main thread, turn SIGTERM into :class:`Terminated` for the duration."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _warm_up(act) -> None:
    """Load (or compile) the numba kernels and CVODE once, before forking, so workers inherit them."""
    if isinstance(act, OddPower):
        X = np.eye(2, 3)
        kw = dict(tol=1e-3, tau_max=1.0, records=2)
        for integrator in ("cvode", "bdf"):
            flow.run_flow(act, np.full((2, 3), 0.5), X, np.ones(2), np.ones(2), integrator=integrator, **kw)


def _one_blas_thread():
    """Cap BLAS at one thread: the flow's matrices are small, and one process runs per core."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def thread_budget() -> int:
    """Processes a stage may use: OMP_NUM_THREADS (Snakemake sets it to the rule's threads), else 1."""
    v = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(v) if v.isdigit() and int(v) > 0 else 1


def run_flows(
    act,
    thetas: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    *,
    workers: int = 1,
    on_result: Callable[[int, flow.FlowResult | None, float], None] | None = None,
    checkpoint=None,
    **kw,
) -> list[flow.FlowResult | None]:
    """:func:`simbias.flow.run_flow` for every replica of ``thetas`` (R, m, d); None where θ is not finite.

    Replicas are independent and each runs exactly as :func:`simbias.flow.run_flow` alone, so
    ``workers`` > 1 (forked processes, one replica per task) gives the same results as
    ``workers = 1``, in replica order. BLAS runs on one thread per process.
    ``on_result(r, result, seconds)`` is called as each replica finishes.

    ``checkpoint`` (a :class:`simbias.flow_checkpoint.FlowCheckpoint`): replicas it holds
    are not run again, and each newly finished one is saved to it at once.

    Ctrl-C (SIGINT) or SIGTERM stops the run at once: the workers are terminated and
    :class:`KeyboardInterrupt` (:class:`Terminated` for SIGTERM) propagates, so nothing
    is written; finished replicas stay in the checkpoint.
    """
    R = len(thetas)
    results: list[flow.FlowResult | None] = [None] * R
    done = checkpoint.load() if checkpoint is not None else {}
    todo = []
    for r, th in enumerate(thetas):
        if r in done:
            results[r] = done[r]
        elif np.isfinite(th).all():
            todo.append((r, act, th, X, y, w, kw))
        elif on_result is not None:
            on_result(r, None, 0.0)
    workers = max(1, min(int(workers), len(todo)))
    if workers > 1 and "fork" not in multiprocessing.get_all_start_methods():
        log.info("no fork start method here: running the flow's replicas one after another")
        workers = 1

    def finished(r: int, res: flow.FlowResult, secs: float) -> None:
        results[r] = res
        if checkpoint is not None:
            checkpoint.save(r, res)
        if on_result is not None:
            on_result(r, res, secs)

    with _one_blas_thread(), _sigterm_interrupts():  # BLAS limit set before forking: inherited
        if workers == 1:
            for task in todo:
                finished(*_flow_task(task))
            return results
        _warm_up(act)
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=_worker_init)
        try:
            for out in pool.imap_unordered(_flow_task, todo, chunksize=1):
                finished(*out)
        except BaseException:
            pool.terminate()  # fail fast: kill the workers, never wait for their tasks
            pool.join()
            raise
        pool.close()
        pool.join()
    return results
