"""Checkpoints of long flow jobs: a killed job restarts from the replicas already finished.

Each finished replica's :class:`simbias.flow.FlowResult` is saved as its own ``.npz``
file (no pickles) in a folder outside the job's output
(``results/.checkpoints/{regime}/run_flow/``), written to a temporary file and renamed
into place (:func:`simbias.checkpoint.atomic_write`), so a kill leaves whole files only.
They are not fsync'ed (two fsyncs per replica, in a grouped sweep's thousands of short
flows): after an OS crash a file may be empty, and :meth:`FlowCheckpoint.load` removes it
like any file it cannot read. A file is used only if its fingerprint matches this run (the regime's
config, the code version, SGD's last iterates, the data and the flow's settings);
anything else is removed with a log line. Replicas are independent, so a resumed job
writes the same flow.nc as an uninterrupted one. The stage deletes the folder once
flow.nc is written.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .checkpoint import atomic_write, fingerprint
from .flow import FlowResult

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: the integrator is saved
_ARRAYS = ("tau", "theta", "loss", "sharpness", "grad_norm", "theta_end")
_SCALARS = ("tau_end", "grad_norm_end", "tau_eps", "retraction", "status", "nfev", "notes", "integrator")


class FlowCheckpoint:
    """One file per finished replica in ``folder``, valid for the run fingerprinted by ``parts``."""

    def __init__(self, folder: str | Path, **parts):
        self.folder = Path(folder)
        self.key = fingerprint(format=FORMAT_VERSION, **parts)
        self.saved = 0

    def _path(self, r: int) -> Path:
        return self.folder / f"replica-{r:05d}.npz"

    def load(self) -> dict[int, FlowResult]:
        """The replicas already finished for this exact run (stale or unreadable files are removed)."""
        done: dict[int, FlowResult] = {}
        if not self.folder.is_dir():
            return done
        for tmp in self.folder.glob(".*.tmp"):  # a save killed half-way
            tmp.unlink(missing_ok=True)
        stale = 0
        for path in sorted(self.folder.glob("replica-*.npz")):
            try:
                with np.load(path, allow_pickle=False) as z:
                    meta = json.loads(str(z["meta"]))
                    arrays = {k: z[k] for k in _ARRAYS}
                if meta["key"] != self.key:
                    raise ValueError("written for another config, input or code version")
                done[int(meta["replica"])] = FlowResult(**arrays, **{k: meta[k] for k in _SCALARS})
            except Exception as exc:  # never trust a file we cannot check
                stale += 1
                log.debug("flow checkpoint %s not used: %s", path, exc)
                path.unlink(missing_ok=True)
        if stale:
            log.warning("removed %d flow checkpoint file(s) from another run in %s", stale, self.folder)
        if done:
            log.info("resuming the flow: %d replica(s) already finished in %s", len(done), self.folder)
        return done

    def save(self, r: int, res: FlowResult) -> None:
        meta = {"key": self.key, "replica": int(r), **{k: getattr(res, k) for k in _SCALARS}}
        meta["nfev"] = int(meta["nfev"])
        meta = {k: (float(v) if isinstance(v, np.floating) else v) for k, v in meta.items()}
        payload = {k: np.asarray(getattr(res, k)) for k in _ARRAYS}
        payload["meta"] = np.array(json.dumps(meta))
        atomic_write(self._path(r), lambda fh: np.savez(fh, **payload), durable=False)
        self.saved += 1

    def clear(self) -> None:
        """Delete the checkpoint files, then the folder and up to two parents if left empty."""
        if not self.folder.is_dir():
            return
        for path in list(self.folder.glob("replica-*.npz")) + list(self.folder.glob(".*.tmp")):
            path.unlink(missing_ok=True)
        for folder in (self.folder, self.folder.parent, self.folder.parent.parent):
            try:
                folder.rmdir()
            except OSError:
                break
