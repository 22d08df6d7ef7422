"""Checkpoints of long SGD jobs: a killed job resumes where it stopped.

A checkpoint holds everything the SGD loop needs to go on exactly as if it had
never stopped: the step, θ, the alive mask, the divergence steps, the records so
far. The random streams need no state: label noise and sample orders are pure
functions of (seed, replica, step) (``docs/noise_stream.md``). It is one ``.npz`` file (no pickles), written to a temporary file in the same
folder, flushed to disk and renamed into place, so a kill at any moment leaves
either the previous checkpoint or the new one, never a torn file.

It lives outside the job's output (``results/.checkpoints/{regime}/``), where
Snakemake does not delete it when it cleans up a failed job. It is used only if
its fingerprint matches: the regime's config hash, the code version, the
backend, and a hash of everything the loop was given (θ0, X, y, w, η, σ, the
step budget and recording schedule, the seed, the dtype, the divergence bound).
Anything else is discarded with a log line, and the run starts from step 0.
A finished job deletes its checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import signals

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: no random-stream states (counter-based noise)


def fingerprint(**parts: Any) -> str:
    """sha256 of named arrays and JSON-able values (arrays by dtype, shape and bytes)."""
    h = hashlib.sha256()
    for name in sorted(parts):
        v = parts[name]
        h.update(name.encode() + b"\0")
        if isinstance(v, np.ndarray) or hasattr(v, "__array__") and not isinstance(v, str | bytes):
            a = np.ascontiguousarray(np.asarray(v))
            h.update(f"{a.dtype.str}{a.shape}".encode() + a.tobytes())
        else:
            h.update(json.dumps(v, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def atomic_write(path: Path, write: Callable[[Any], None], durable: bool = True) -> None:
    """Call ``write(fh)`` on a temporary file next to ``path``, fsync it and rename it into place.

    ``durable=False`` skips both fsyncs: the rename still leaves a whole file or none after a
    killed process, but an OS crash may leave an empty one (for readers that check what they load).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with signals.deferred():  # a signal waits for the file to be whole (or removed)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                if durable:
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    if not durable:
        return
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


@dataclass
class State:
    """What ``load`` gives back: the step and the arrays."""

    step: int
    arrays: dict[str, np.ndarray]
    saved_at: str


class SGDCheckpoint:
    """Save and restore the SGD loop's state every ``every_steps`` steps or ``every_seconds`` s.

    The loop calls ``bind`` (with what determines its trajectory), ``load`` once,
    ``next_step`` to end its segments on checkpoint steps, ``due`` after every
    segment and ``save`` when due. The stage calls ``clear`` once the output is written.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        every_steps: int = 0,
        every_seconds: float = 0.0,
        fingerprint: dict | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.path = Path(path)
        self.every_steps = int(every_steps)
        self.every_seconds = float(every_seconds)
        self.stage_fingerprint = dict(fingerprint or {})
        self.clock = clock
        self._key: str | None = None
        self._last = clock()
        self.saves = 0
        self.resumed_from: int | None = None

    # -- the loop's side

    def bind(self, **run: Any) -> None:
        """Fix the fingerprint: the stage's parts plus everything the loop was given."""
        self._key = fingerprint(format=FORMAT_VERSION, stage=self.stage_fingerprint, run=fingerprint(**run))

    def load(self) -> State | None:
        """The saved state if there is one for this exact run, else None (a stale one is removed)."""
        self._clean_temporaries()
        self._last = self.clock()
        if not self.path.exists():
            return None
        try:
            # our own handle: np.load leaks its file when the archive is corrupt
            with open(self.path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                arrays = {k: z[k] for k in z.files if k != "meta"}
        except Exception as exc:  # unreadable: never trust it
            log.warning("checkpoint %s is unreadable (%s); starting from step 0", self.path, exc)
            self.clear()
            return None
        if meta.get("key") != self._key:
            log.warning(
                "checkpoint %s was written for another config, input, code version or CPU kernel; "
                "starting from step 0 (it is removed)",
                self.path,
            )
            self.clear()
            return None
        self.resumed_from = int(meta["step"])
        log.info(
            "resuming from checkpoint %s at step %d (saved %s)", self.path, meta["step"], meta["saved_at"]
        )
        return State(int(meta["step"]), arrays, meta["saved_at"])

    def next_step(self, k: int) -> int | None:
        """The next step after ``k`` at which a step-based checkpoint falls (None: time only)."""
        if self.every_steps <= 0:
            return None
        return (k // self.every_steps + 1) * self.every_steps

    def due(self, k: int) -> bool:
        by_steps = self.every_steps > 0 and k % self.every_steps == 0
        by_time = self.every_seconds > 0 and self.clock() - self._last >= self.every_seconds
        return by_steps or by_time

    def save(self, k: int, arrays: dict[str, np.ndarray]) -> None:
        if self._key is None:
            raise RuntimeError("SGDCheckpoint.save before bind")
        meta = {
            "format": FORMAT_VERSION,
            "key": self._key,
            "step": int(k),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **{k_: v for k_, v in self.stage_fingerprint.items() if isinstance(v, str | int | float)},
        }
        payload = {name: np.asarray(a) for name, a in arrays.items()}
        payload["meta"] = np.array(json.dumps(meta))
        try:
            atomic_write(self.path, lambda fh: np.savez(fh, **payload))
        except OSError as exc:  # a full disk or a read-only folder: the run itself goes on
            log.warning("checkpoint at step %d not saved (%s); SGD goes on without it", k, exc)
            self._last = self.clock()
            return
        self.saves += 1
        self._last = self.clock()
        log.info("checkpoint at step %d -> %s", k, self.path)

    # -- the stage's side

    def clear(self, empty_parents: int = 0) -> None:
        """Delete the checkpoint, then up to ``empty_parents`` of its folders that are left empty."""
        self._clean_temporaries()
        self.path.unlink(missing_ok=True)
        folder = self.path.parent
        for _ in range(empty_parents):
            try:
                folder.rmdir()  # only if empty
            except OSError:
                break
            folder = folder.parent

    def _clean_temporaries(self) -> None:
        """Remove temporary files a killed save left behind (never the checkpoint itself)."""
        if self.path.parent.is_dir():
            for tmp in self.path.parent.glob(f".{self.path.name}.*.tmp"):
                tmp.unlink(missing_ok=True)
