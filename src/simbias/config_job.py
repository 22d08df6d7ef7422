"""What a job sees of its regime: the entry without the operational fields (the jobs' params),
the data stage's part of it, and the hash that NetCDF files and checkpoints record."""

from __future__ import annotations

import hashlib
import json

# Fields of a regime that the data stage depends on (so editing σ does not redo data).
DATA_FIELDS = ("m", "d", "n", "replicas", "data", "labels", "weights", "init")

# Operational settings: they change how a job runs, never what it computes, so they are
# kept out of the jobs' params (changing them reruns nothing) and out of config_sha256.
OPERATIONAL_FIELDS = {
    "sgd": ("checkpoint_every_steps", "checkpoint_every_seconds"),
    # whether a grid point's own figures are drawn; how many points one job runs
    "sweep_of": ("point_figures", "group_size"),
}


def regime_sha256(reg: dict) -> str:
    return hashlib.sha256(json.dumps(reg, sort_keys=True).encode()).hexdigest()


def job_config(reg: dict) -> dict:
    """A regime's entry without the operational fields (what the jobs' params carry)."""
    out = dict(reg)  # a new dict for each block it changes; the rest is shared, never modified
    for block, fields in OPERATIONAL_FIELDS.items():
        if isinstance(out.get(block), dict):
            out[block] = {k: v for k, v in out[block].items() if k not in fields}
    return out


def data_subset(reg: dict) -> dict:
    """The part of a regime's config that the data stage depends on."""
    return {k: reg[k] for k in DATA_FIELDS}
