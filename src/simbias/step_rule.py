"""What an algorithm is to the ensemble runner: a step rule (docs/architecture.md).

An algorithm (label-noise SGD and GD in :mod:`simbias.sgd`, 1-SAM in :mod:`simbias.sam`)
is a :class:`StepRule`: its own parameters, noise and clock τ(k), and a segment function
that advances every replica by some steps. :mod:`simbias.ensemble` runs any step rule
(segments, records, checkpoints, divergence, progress); the kernels (NumPy reference,
numba, CUDA) are ways to run a rule's segments. :func:`freeze_diverged` is the divergence
rule every reference segment function applies before each step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from .backend import to_numpy

log = logging.getLogger(__name__)

# run(θ, alive, k0, steps, loss_bound, diverged_step) -> (θ, alive): ``steps`` steps from step k0
Segment = Callable[[Any, Any, int, int, float, np.ndarray], tuple[Any, Any]]


class StepRule(Protocol):
    """An algorithm as the ensemble runner sees it."""

    def tau(self, step) -> np.ndarray:
        """Flow time τ of step k (per replica where the parameters are per replica)."""
        ...

    def key(self) -> dict:
        """Everything that fixes the trajectory besides the runner's inputs (the checkpoint's key)."""
        ...

    def segments(self, xp, act, X, y, w, replicas: np.ndarray, dtype: str) -> tuple[Segment, str]:
        """The segment function on these arrays (already on xp, in dtype), and the kernel's name."""
        ...


def freeze_diverged(xp, loss, alive, loss_bound: float, k: int, diverged_step):
    """The divergence rule: a replica whose loss L = Σ r² (per replica) is non-finite or above
    ``loss_bound`` before step k is frozen from step k on (``diverged_step`` records k).
    Returns the new mask."""
    bad = ~(loss <= loss_bound) & alive
    if bool(bad.any()):
        idx = to_numpy(bad)
        diverged_step[idx] = k
        log.warning("%d replica(s) diverged at step %d", int(idx.sum()), k)
        alive = alive & ~bad
    return alive
