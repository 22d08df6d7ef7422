"""Figure kind singular_values: σ_k(Z)/σ_1(Z) under SGD (the paper's Figures 1a and 2)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .. import storage
from .style import BAND, BAND_TEXT, _algorithm, _clock_label, _header, _kept, _legend_outside, _save, _sub


def _meaningful_ranks(cfg: dict) -> int:
    """Z = ΘXᵀ has rank ≤ min(m, n, d): singular values past that are exactly 0."""
    return min(cfg["m"], cfg["n"], cfg["d"])


def _long(values: np.ndarray, x: np.ndarray, xname: str, ranks: range, keep: np.ndarray) -> pd.DataFrame:
    """(replica, record, rank) normalised singular values -> long-form frame for seaborn."""
    norm = values / values[..., :1]
    frames = []
    for k in ranks:
        v = norm[keep][:, :, k - 1]
        frames.append(
            pd.DataFrame(
                {xname: np.tile(x, v.shape[0]), "value": v.ravel(), "singular value": f"σ{_sub(k)}/σ₁"}
            )
        )
    return pd.concat(frames, ignore_index=True)


def _sv_lines(ax, df: pd.DataFrame, x: str, style: str | None = None) -> str:
    """σ_k/σ_1 lines, one colour per k (ordered palette); bands only for up to three ratios.

    Returns what the band shows, for the title.
    """
    hues = list(dict.fromkeys(df["singular value"]))
    banded = len(hues) <= 3
    sns.lineplot(
        data=df,
        x=x,
        y="value",
        hue="singular value",
        hue_order=hues,
        palette=sns.color_palette("deep" if banded else "viridis", len(hues)),
        style=style,
        estimator="median",
        errorbar=BAND if banded else None,
        ax=ax,
    )
    _legend_outside(ax)
    return BAND_TEXT if banded else f"lines: median over replicas ({len(hues)} ratios: no bands)"


def singular_values(regime, cfg, inputs, png, pdf) -> None:
    """σ_k(Z)/σ_1(Z) against SGD step: replica median and 10–90% band."""
    sgd = storage.open_dataset(inputs["sgd"])
    keep, note = _kept(sgd)
    step = sgd["step"].values
    pos = step > 0
    K = _meaningful_ranks(cfg)
    alg = _algorithm(sgd)
    xname = f"{'GD' if sgd.attrs.get('algorithm') == 'gd' else alg} step k"
    df = _long(sgd["feature_sv"].values[:, pos], step[pos], xname, range(2, K + 1), keep)
    fig, ax = plt.subplots(figsize=(9.5, 5.2))
    what = _sv_lines(ax, df, xname)
    ax.set(xscale="log", yscale="log", ylabel="σₖ(Z) / σ₁(Z)   (Z = ΘXᵀ)")
    ax.set_title(f"{_header(regime, cfg)}\n{alg}, {note}\n{what}")
    per_step = float(sgd["tau"].values[-1] / step[-1]) if step[-1] > 0 else float("nan")
    if np.isfinite(per_step) and per_step > 0:  # GD has no clock: no τ axis
        top = ax.secondary_xaxis("top", functions=(lambda k: k * per_step, lambda t: t / per_step))
        top.set_xlabel(_clock_label(sgd))
    _save(fig, png, pdf)
