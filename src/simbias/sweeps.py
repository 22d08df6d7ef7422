"""Parameter sweeps: one config regime with a ``sweep:`` block becomes one regime per grid point.

    my_sweep:
      m: 10 ...
      sweep: {mode: product, eta: [0.02, 0.05], sigma: [0.1, 0.2]}

expands into ``my_sweep__eta-0p02__sigma-0p1`` and so on (readable, path-safe, and
stable: a point's name depends only on its own values, so adding a grid value adds
jobs for the new points only). ``mode: zip`` pairs the lists instead of crossing them.
``point_figures`` says whether each grid point gets its own figures: ``auto`` (the default)
draws them for sweeps of at most ``POINT_FIGURES_MAX`` points; the phase diagram is always drawn.
``group_size`` (default ``GROUP_SIZE``) grid points, consecutive in name order, share one job per
stage (:func:`groups`); ``group_size: 1`` gives every point its own jobs.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

# `point_figures: auto` draws each grid point's own figures up to this many points
POINT_FIGURES_MAX = 25

# grid points per job of each stage (the sweep's `group_size`, when not given)
GROUP_SIZE = 64

# sweepable key -> where it lives in a regime's config
SWEEP_KEYS: dict[str, tuple[str, ...]] = {
    "eta": ("eta",),
    "sigma": ("sigma",),
    "m": ("m",),
    "d": ("d",),
    "n": ("n",),
    "nu": ("activation", "nu"),
    "rho": ("algorithm", "rho"),
}


def format_value(v: Any) -> str:
    """Path-safe text for a grid value: 0.05 -> 0p05, -1e-3 -> m0p001, 10 -> 10."""
    if isinstance(v, bool):
        raise ValueError("sweep values must be numbers")
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e15):
        text = str(int(v))
    else:
        text = f"{v:.10g}"
    return text.replace("-", "m").replace(".", "p").replace("+", "")


def point_name(base: str, point: dict[str, Any]) -> str:
    return base + "".join(f"__{k}-{format_value(v)}" for k, v in point.items())


def grid(sweep: dict) -> list[dict[str, Any]]:
    """The grid points of a sweep block, in a stable order (keys as in SWEEP_KEYS)."""
    keys = [k for k in SWEEP_KEYS if k in sweep]
    values = [list(sweep[k]) for k in keys]
    if sweep.get("mode", "product") == "zip":
        if len({len(v) for v in values}) > 1:
            raise ValueError("sweep mode 'zip' needs lists of equal length: " + ", ".join(keys))
        combos = list(zip(*values, strict=True))
    else:
        combos = list(itertools.product(*values))
    return [dict(zip(keys, c, strict=True)) for c in combos]


def expand(regimes: dict[str, dict]) -> dict[str, dict]:
    """Replace every regime that has a ``sweep`` block by its grid points."""
    out: dict[str, dict] = {}
    for name, reg in regimes.items():
        sweep = reg.get("sweep")
        if not sweep:
            out[name] = reg
            continue
        points = grid(sweep)
        figures = sweep.get("point_figures", "auto")
        figures = len(points) <= POINT_FIGURES_MAX if figures == "auto" else bool(figures)
        for point in points:
            r = json.loads(json.dumps({k: v for k, v in reg.items() if k != "sweep"}))  # a deep copy
            for key, value in point.items():
                target = r
                *parents, leaf = SWEEP_KEYS[key]
                for p in parents:
                    target = target.setdefault(p, {})
                target[leaf] = value
            r["sweep_of"] = {
                "base": name,
                "point": point,
                "axes": [k for k in SWEEP_KEYS if k in sweep],
                "point_figures": figures,
                "group_size": int(sweep.get("group_size", GROUP_SIZE)),
            }
            pname = point_name(name, point)
            if pname in out or pname in regimes:
                raise ValueError(f"grid point {pname!r} appears twice or clashes with another regime")
            out[pname] = r
    return out


def representatives(regimes: dict[str, dict]) -> list[str]:
    """Grid points that between them hold every value of every axis of every sweep (the first
    point with each value), and every regime that is no grid point."""
    seen: set = set()
    out = []
    for name, reg in regimes.items():
        of = reg.get("sweep_of")
        if of is None:
            out.append(name)
            continue
        keys = [(of["base"], k, json.dumps(v)) for k, v in of["point"].items()]
        if not seen.issuperset(keys):
            seen.update(keys)
            out.append(name)
    return out


def groups(regimes: dict[str, dict]) -> dict[str, list[list[str]]]:
    """{sweep base: its grid points in chunks of at most ``group_size``, in name order}, for the
    sweeps whose ``group_size`` is above 1 (each chunk is one job per stage). Sorted names keep
    the points of one value of the first axis together."""
    points: dict[str, list[str]] = {}
    size: dict[str, int] = {}
    for name, reg in regimes.items():
        of = reg.get("sweep_of")
        if of is not None and of.get("group_size", GROUP_SIZE) > 1:
            points.setdefault(of["base"], []).append(name)
            size[of["base"]] = of.get("group_size", GROUP_SIZE)
    return {b: [sorted(p)[i : i + size[b]] for i in range(0, len(p), size[b])] for b, p in points.items()}
