"""A finished sgd.nc kept beside the SGD checkpoint, so a job killed after writing it (before
Snakemake recorded it) does not redo SGD."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from .. import storage
from ..code_version import code_version
from ..config_job import job_config, regime_sha256

log = logging.getLogger(__name__)


class FinishedSGD:
    """A hard link to a finished sgd.nc, next to the checkpoint, with what it was made from.

    Snakemake records a job as complete only after its process exits; a kill in between
    leaves a complete sgd.nc that Snakemake calls incomplete and deletes before the rerun
    (``--rerun-incomplete``). The link (no extra disk space) survives that, and a rerun of
    the same regime, config, code, backend and data.nc reuses it instead of redoing SGD.

    The link shares sgd.nc's bytes: a change made to sgd.nc in place (truncated, edited)
    changes it too. So the file's sha256 is kept with it, and a link whose bytes no longer
    match is discarded (SGD runs again) instead of being handed back.
    """

    def __init__(self, path: Path, key: dict):
        self.path, self.meta, self.key = path, path.with_suffix(".json"), key

    def reuse(self, out: str) -> bool:
        try:
            meta = json.loads(self.meta.read_text())
            ok = self.path.exists() and meta.get("key") == self.key
        except (OSError, ValueError, AttributeError):
            ok = False
        if ok and _sha256(self.path) != meta.get("sha256"):
            log.warning(
                "%s: %s was changed after it was written (its sha256 differs: truncated or "
                "edited in place?); not reused, SGD runs again",
                self.key["regime"],
                self.path,
            )
            ok = False
        if not ok:
            self.clear()
            return False
        with storage.atomic_path(out) as tmp:
            shutil.copyfile(self.path, tmp)
        log.info(
            "%s: reusing %s, written by an earlier run of this exact job (killed before "
            "Snakemake recorded it)",
            self.key["regime"],
            self.path,
        )
        return True

    def keep(self, out: str) -> None:
        self.clear()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(out, self.path)
        except OSError:  # no hard links on this file system: a copy
            shutil.copyfile(out, self.path)
        self.meta.write_text(json.dumps({"key": self.key, "sha256": _sha256(self.path)}))

    def clear(self) -> None:
        self.meta.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def finished_sgd(checkpoint_path: str | None, regime: str, cfg: dict, data_path: str):
    if not checkpoint_path:
        return None
    key = {
        "regime": regime,
        "config_sha256": regime_sha256(job_config(cfg)),
        "code": code_version("run_sgd"),
        "data_sha256": _sha256(Path(data_path)),
    }
    return FinishedSGD(Path(checkpoint_path).with_name("finished_sgd.nc"), key)
