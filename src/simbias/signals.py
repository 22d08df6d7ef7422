"""SIGINT and SIGTERM in a pipeline job: a prompt stop that never hangs.

A job turns SIGTERM into :class:`SystemExit` and SIGINT into :class:`KeyboardInterrupt`, so the
``finally`` blocks run (a file being written removes its temporary). Two rules keep that stop from
hanging:

- :func:`deferred` holds the signals while a file is read or written: netCDF4/HDF5 calls run under
  xarray's lock, and an exception raised between its acquire and its ``with`` body would leave the
  lock held; the clean-up's ``close()`` then waits on it for ever. The held signal is raised
  when the block ends (a write is whole, then the job stops).
- a stop is taken once (:func:`stopping`): later SIGINT and SIGTERM are ignored, so the one
  that Snakemake forwards (:func:`forward_to_children`) after the same signal reached the whole
  process group cannot interrupt the clean-up; and it arms a deadline (:data:`DEADLINE_S`,
  SIGALRM at its default action): a job still alive that long after the signal is ended by the
  kernel, wherever it is stuck. Files are only ever renamed into place whole, and checkpoints
  too, so that loses nothing already computed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator

DEADLINE_S = int(os.environ.get("SIMBIAS_STOP_DEADLINE_S", "5"))  # tests raise it on a loaded machine
_STOPS = (signal.SIGINT, signal.SIGTERM)


def arm_deadline(seconds: int = DEADLINE_S) -> None:
    """End this process (SIGALRM, default action) ``seconds`` from now unless it exits first; an
    earlier deadline already armed is kept."""
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    left = signal.alarm(seconds)
    if 0 < left < seconds:
        signal.alarm(left)


def stopping() -> None:
    """The process is stopping: ignore further SIGINT and SIGTERM, and arm the deadline."""
    for s in _STOPS:
        signal.signal(s, signal.SIG_IGN)
    arm_deadline()


def _on_sigterm(signum, frame):
    stopping()
    logging.getLogger("simbias").warning("stopped by SIGTERM")
    sys.exit(128 + signum)


def _on_sigint(signum, frame):
    stopping()
    raise KeyboardInterrupt


def install_stop_handlers() -> None:
    """A job's handlers: SIGTERM becomes a normal exit (status 143), SIGINT KeyboardInterrupt,
    each through :func:`stopping`."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, _on_sigint)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the block (main thread only); the first that came is raised
    through its own handler when the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    old = {s: signal.signal(s, lambda signum, frame: came.append(signum)) for s in _STOPS}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if came:
            signal.raise_signal(came[0])


def forward_to_children() -> None:
    """In Snakemake's process: pass SIGINT and SIGTERM on to every running job (all descendant
    processes), then to Snakemake's own handler. Snakemake alone would wait for its jobs to end
    (SIGTERM: its graceful stop; SIGINT: it cancels only jobs not yet started), so a signal to
    Snakemake alone (``kill PID``) ends the running jobs too; their checkpoints stay for the rerun."""
    import psutil

    if threading.current_thread() is not threading.main_thread():
        return
    before = {s: signal.getsignal(s) for s in _STOPS}

    def forward(signum, frame):
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.send_signal(signum)
        handler = before[signum]
        if callable(handler):
            handler(signum, frame)
        elif handler == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    for s in _STOPS:
        signal.signal(s, forward)
