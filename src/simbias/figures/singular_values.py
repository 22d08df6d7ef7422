"""Figure kind singular_values: σ_k(Z)/σ_1(Z) under SGD (the paper's Figures 1a and 2)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .. import storage
from .style import BAND, BAND_TEXT, _algorithm, _clock_label, _header, _kept, _legend_outside, _save, _sub

# The level the paper's Figure 1a draws: σ_k/σ_1 below it reads as "gone to zero".
COLLAPSE_LEVEL = 1e-2


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


def _end_medians(sv: np.ndarray, keep: np.ndarray, K: int) -> np.ndarray:
    """Median over the kept replicas of σ_k/σ_1 (k = 2..K) at the last record of ``sv`` (R, T, ·)."""
    last = sv[keep, -1]
    return np.median(last[:, 1:K] / last[:, :1], axis=0)


def _end_text(step: float, tau: float, end: np.ndarray) -> str:
    """The title line with the end medians (σ₂/σ₁ and the last ratio when there are more than two)."""
    pairs = list(enumerate(end, start=2))
    if len(pairs) > 2:
        pairs = [pairs[0], pairs[-1]]
    at = f"step {step:.3g}" + (f" (τ = {tau:.3g})" if np.isfinite(tau) and tau > 0 else "")
    return f"median at {at}: " + ", ".join(f"σ{_sub(k)}/σ₁ = {v:.1e}" for k, v in pairs)


def _collapse_line(ax) -> None:
    """The paper's reference level, dashed, in the legend."""
    ax.axhline(COLLAPSE_LEVEL, color="grey", lw=0.8, ls="--", label="10⁻² (as in the paper's Fig. 1a)")


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
    fig, ax = plt.subplots(figsize=(9.5, 5.4))
    _collapse_line(ax)
    what = _sv_lines(ax, df, xname)
    ax.set(xscale="log", yscale="log", ylabel="σₖ(Z) / σ₁(Z)   (Z = ΘXᵀ)")
    title = f"{_header(regime, cfg)}\n{alg}, {note}\n{what}"
    if keep.any() and K > 1:
        end = _end_medians(sgd["feature_sv"].values, keep, K)
        title += "\n" + _end_text(step[-1], float(sgd["tau"].values[-1]), end)
    ax.set_title(title)
    per_step = float(sgd["tau"].values[-1] / step[-1]) if step[-1] > 0 else float("nan")
    if np.isfinite(per_step) and per_step > 0:  # GD has no clock: no τ axis
        top = ax.secondary_xaxis("top", functions=(lambda k: k * per_step, lambda t: t / per_step))
        top.set_xlabel(_clock_label(sgd))
    _save(fig, png, pdf)
