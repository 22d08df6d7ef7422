"""Stage run_brute_force: label-noise SGD continued past the hand-over to the flow."""

from __future__ import annotations

import logging
import time

from .. import storage
from ..activations import make_activation
from ..backend import get_backend
from ..ensemble import record_schedule
from ..sgd import label_noise_sgd
from .common import open_inputs, stage_attrs, write_nc
from .sgd import _resumed, _sgd_checkpoint, stage_fingerprint
from .sgd_records import CLOCKS, sgd_dataset

log = logging.getLogger(__name__)


def run_brute_force(
    regime: str,
    cfg: dict,
    data_path: str,
    sgd_path: str,
    out: str,
    checkpoint_path: str | None = None,
    checkpoint_every_steps: int = 0,
    checkpoint_every_seconds: float = 0.0,
) -> None:
    """brute_force.nc: label-noise SGD continued from SGD's last iterate for brute_force.steps more
    steps, past the hand-over to the flow, on the same τ axis (fresh noise streams from
    brute_force.seed: the same law as continuing the first run's streams).

    It is what the flow continuation replaces; :func:`compare` holds the two against each
    other at the continued run's last τ (docs/theory.md).

    With ``checkpoint_path`` the loop saves its state there every ``checkpoint_every_steps``
    steps or ``checkpoint_every_seconds`` seconds and, rerun after a kill or a signal, resumes
    from it with the same numbers as an uninterrupted run (as :func:`.sgd.run_sgd`); the
    checkpoint is deleted once brute_force.nc is written.
    """
    data, X, y, w = open_inputs(data_path)
    sgd = storage.open_dataset(sgd_path)
    act = make_activation(cfg["activation"])
    b = cfg["brute_force"]
    s = cfg["sgd"]
    K = int(b["steps"])
    rec = record_schedule(K, b["log_points"], b["linear_points"])
    xp, backend = get_backend(cfg["backend"])
    ckpt = _sgd_checkpoint(
        checkpoint_path,
        checkpoint_every_steps,
        checkpoint_every_seconds,
        stage_fingerprint("run_brute_force", regime, cfg, backend),
    )
    t0 = time.monotonic()
    res = label_noise_sgd(
        xp,
        act,
        sgd["theta"].values[:, -1],
        X,
        y,
        w,
        eta=cfg["eta"],
        sigma=cfg["sigma"],
        steps=K,
        record_steps=rec,
        seed=b["seed"],
        dtype=cfg["dtype"],
        loss_bound=s["loss_bound"],
        progress=lambda msg: log.info("%s brute force: %s", regime, msg),
        progress_seconds=60.0,
        checkpoint=ckpt,
    )
    log.info(
        "%s: brute force, %d more steps x %d replicas in %.1f s%s",
        regime,
        K,
        cfg["replicas"],
        time.monotonic() - t0,
        _resumed(ckpt),
    )
    ds = sgd_dataset(res, cfg, X.shape[0], step0=int(sgd["step"].values[-1]))
    ds.attrs = stage_attrs(
        regime,
        cfg,
        backend,
        f"{regime}: label-noise SGD continued past the hand-over (brute force)",
        res.kernel,
    )
    ds.attrs["algorithm"] = cfg["algorithm"]["name"]
    ds.attrs["clock"] = CLOCKS[cfg["algorithm"]["name"]]
    write_nc(ds, cfg, out)
    if ckpt is not None:
        ckpt.clear(empty_parents=2)  # results/.checkpoints/{regime}/ and .checkpoints/, if empty
