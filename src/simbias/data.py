"""Training data, labels, second-layer weights and initial weights (appendix A).

The paper draws data entries uniformly on [0, 1] and assumes ‖x_i‖ = 1; it does
not say how labels or initial weights were drawn. The choices here are
configurable; every draw has its own seed, and replica r's initial weights come
from its own stream, so they do not depend on how many replicas run.
"""

from __future__ import annotations

import numpy as np


def rng_for(seed: int, *key: int) -> np.random.Generator:
    """An independent PCG64 stream for ``(seed, *key)`` (SeedSequence spawn key)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def make_inputs(n: int, d: int, spec: dict) -> np.ndarray:
    """X (n, d): entries Uniform[low, high] or N(0, 1); rows normalised if asked."""
    rng = rng_for(spec["seed"])
    if spec["distribution"] == "uniform":
        X = rng.uniform(spec["low"], spec["high"], size=(n, d))
    else:
        X = rng.standard_normal((n, d))
    if spec["normalize"]:
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
    return X


def make_labels(n: int, spec: dict) -> np.ndarray:
    """y (n,): N(0, scale²) or Uniform[low, high]."""
    rng = rng_for(spec["seed"])
    if spec["distribution"] == "normal":
        return spec["scale"] * rng.standard_normal(n)
    return rng.uniform(spec["low"], spec["high"], size=n)


def make_weights(m: int, spec: dict) -> np.ndarray:
    """Second-layer weights w (m,): all ones (the paper), an explicit list, or drawn
    Uniform[low, high] / N(mean, scale²) with their own seed. Theorem 2's targets need w_j ≠ 0."""
    kind = spec["kind"]
    if kind == "ones":
        return np.ones(m)
    if kind == "list":
        w = np.asarray(spec["values"], dtype=float)
        if w.shape != (m,):
            raise ValueError(f"weights.values has {w.size} entries, expected m = {m}")
        return w
    rng = rng_for(spec.get("seed", 4))
    if kind == "uniform":
        return rng.uniform(spec.get("low", 0.5), spec.get("high", 1.5), size=m)
    if kind == "normal":
        return spec.get("mean", 1.0) + spec.get("scale", 0.3) * rng.standard_normal(m)
    raise ValueError(f"unknown weights.kind {kind!r}")


def make_init(replicas: int, m: int, d: int, spec: dict) -> np.ndarray:
    """θ0 (R, m, d): i.i.d. N(0, scale²) entries, replica r from stream (seed, r)."""
    return np.stack(
        [spec["scale"] * rng_for(spec["seed"], r).standard_normal((m, d)) for r in range(replicas)]
    )


def make_dataset(cfg: dict) -> dict[str, np.ndarray]:
    """All of a regime's fixed inputs, from its resolved config entry."""
    m, d, n = cfg["m"], cfg["d"], cfg["n"]
    return {
        "x": make_inputs(n, d, cfg["data"]),
        "y": make_labels(n, cfg["labels"]),
        "w": make_weights(m, cfg["weights"]),
        "theta0": make_init(cfg["replicas"], m, d, cfg["init"]),
    }
