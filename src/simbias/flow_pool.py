"""Many replicas' flows at once: :func:`run_flows` runs :func:`simbias.flow.run_flow` for every
replica, in forked worker processes (one per thread the stage has), with one BLAS thread each.
It stops at once on Ctrl-C or SIGTERM and saves each finished replica to a checkpoint
(:mod:`simbias.flow_checkpoint`), so a rerun resumes (docs/performance.md, "Worker processes,
Ctrl-C, checkpoints").

The workers are not a :class:`multiprocessing.pool.Pool`: each has its own pipe to the parent
(no queue, no lock shared between processes), and the parent stops them by pid with SIGKILL.
So a shutdown cannot deadlock, whatever a worker is doing when the signal arrives (a Pool's
``terminate`` can: it takes the task queue's lock, which a worker killed by the same signal may
hold; docs/reliability.md, "Ctrl-C, or SIGTERM").
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
import traceback
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait

import numpy as np

from . import flow, signals
from .activations import OddPower

log = logging.getLogger(__name__)


def _flow_task(args) -> tuple[int, flow.FlowResult, float]:
    """One replica's flow (a worker's task): (replica, result, seconds)."""
    r, act, theta, X, y, w, kw = args
    t0 = time.monotonic()
    return r, flow.run_flow(act, theta, X, y, w, **kw), time.monotonic() - t0


def _worker_init() -> None:
    """Workers leave SIGINT to the parent (which kills them), die at once on SIGTERM, and die
    with the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with contextlib.suppress(Exception):  # Linux: SIGKILL when the parent dies, even by kill -9
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _worker_main(conn: Connection) -> None:
    """A worker: run each task received on ``conn`` and send back ("ok", result) or ("error",
    exception); stop at None or when the parent's end closes."""
    _worker_init()
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        try:
            msg = ("ok", _flow_task(task))
        except Exception as e:  # handed to the parent, which raises it
            msg = ("error", e, traceback.format_exc())
        try:
            conn.send(msg)
        except (BrokenPipeError, OSError):
            return
        except Exception:  # an exception that cannot be pickled: send its text
            conn.send(("error", RuntimeError(msg[-1]), msg[-1]))


class Terminated(KeyboardInterrupt):
    """SIGTERM during :func:`run_flows`, raised like Ctrl-C so the same clean-up runs."""


class WorkerDied(RuntimeError):
    """A flow worker ended without sending its result (killed from outside, or out of memory)."""


@contextlib.contextmanager
def _sigterm_interrupts():
    """In the main thread, turn SIGTERM into :class:`Terminated` for the duration."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        signals.stopping()
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


class _Workers:
    """``n`` forked worker processes, each with its own duplex pipe; :meth:`results` hands them
    the tasks one at a time and yields what they send back. :meth:`stop` kills them by pid."""

    def __init__(self, n: int):
        ctx = multiprocessing.get_context("fork")
        self.procs: dict[Connection, multiprocessing.process.BaseProcess] = {}
        try:
            for _ in range(n):
                parent, child = ctx.Pipe(duplex=True)
                p = ctx.Process(target=_worker_main, args=(child,), daemon=True)
                p.start()
                child.close()
                self.procs[parent] = p
        except BaseException:
            self.stop()
            raise

    def results(self, tasks: list) -> Iterator:
        todo = iter(tasks)
        busy: set[Connection] = set()

        def give(conn: Connection) -> None:
            task = next(todo, None)
            if task is not None:
                conn.send(task)
                busy.add(conn)

        for conn in self.procs:
            give(conn)
        while busy:
            for conn in wait(list(busy)):
                busy.discard(conn)
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    raise self._died(conn) from None
                if msg[0] == "error":
                    raise msg[1]
                give(conn)
                yield msg[1]

    def _died(self, conn: Connection) -> BaseException:
        p = self.procs[conn]
        p.join(5)
        code = p.exitcode
        if code is not None and -code in (signal.SIGTERM, signal.SIGINT):
            return Terminated(f"flow worker {p.pid} stopped by signal {-code}")
        return WorkerDied(
            f"flow worker {p.pid} ended without its result (exit code {code}"
            f"{'; killed by signal ' + str(-code) if code is not None and code < 0 else ''})"
        )

    def close(self) -> None:
        """Let idle workers end on their own (None), then :meth:`stop` any that do not."""
        for conn in self.procs:
            with contextlib.suppress(OSError):
                conn.send(None)
        for p in self.procs.values():
            p.join(10)
        self.stop()

    def stop(self) -> None:
        """Kill every worker by pid and reap it: no lock is taken that a worker could hold."""
        with signals.deferred():  # a second signal cannot cut the clean-up short
            for p in self.procs.values():
                if p.exitcode is None:
                    with contextlib.suppress(OSError):
                        os.kill(p.pid, signal.SIGKILL)
            for conn, p in self.procs.items():
                p.join()
                conn.close()
            self.procs.clear()


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

    Ctrl-C (SIGINT) or SIGTERM stops the run at once: the workers are killed and
    :class:`KeyboardInterrupt` (:class:`Terminated` for SIGTERM) propagates, so nothing
    is written; finished replicas stay in the checkpoint. A worker that dies otherwise
    raises :class:`WorkerDied`.
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
        pool = _Workers(workers)
        try:
            for out in pool.results(todo):
                finished(*out)
        except BaseException:
            pool.stop()  # fail fast: kill the workers, never wait for their tasks
            raise
        pool.close()
    return results
