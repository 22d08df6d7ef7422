"""Figure kind singular_values: σ_k(Z)/σ_1(Z) under SGD (the paper's Figures 1a and 2)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from .. import storage
from .style import BAND, BAND_TEXT, _algorithm, _clock_label, _header, _kept, _legend_outside, _save, _sub

# The level the paper's Figure 1a draws: σ_k/σ_1 below it reads as "gone to zero".
COLLAPSE_LEVEL = 1e-2


def _meaningful_ranks(cfg: dict) -> int:
    """Z = ΘXᵀ has rank ≤ min(m, n, d): singular values past that are exactly 0."""
    return min(cfg["m"], cfg["n"], cfg["d"])


def _long(values: np.ndarray, x: np.ndarray, xname: str, ranks: range, keep: np.ndarray) -> pd.DataFrame:
    """(replica, record, rank) normalised singular values -> long-form frame for seaborn
    (columns ``xname``, value, k, singular value; no rows when ``ranks`` is empty)."""
    norm = values / values[..., :1]
    frames = []
    for k in ranks:
        v = norm[keep][:, :, k - 1]
        frames.append(
            pd.DataFrame(
                {
                    xname: np.tile(x, v.shape[0]),
                    "value": v.ravel(),
                    "k": k,
                    "singular value": f"σ{_sub(k)}/σ₁",
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=[xname, "value", "k", "singular value"])
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


# Up to this many σ_k/σ_1 lines get a legend entry each; past it, colour encodes k on a colour bar.
LEGEND_RATIOS = 6

# What a figure says when Z has a single singular value (nothing to divide by σ_1).
ONE_SV_NOTE = "Z = ΘXᵀ has a single singular value (min(m, d, n) = 1)"


def _sv_lines(ax, df: pd.DataFrame, x: str, style: str | None = None) -> str:
    """σ_k/σ_1 lines, one colour per k (ordered palette); bands only for up to three ratios,
    a legend entry per ratio up to LEGEND_RATIOS, a colour bar for k past that.

    Returns what the band shows, for the title.
    """
    hues = list(dict.fromkeys(df["singular value"]))
    if len(hues) > LEGEND_RATIOS:
        _sv_lines_colorbar(ax, df, x, style)
        return f"lines: median over replicas ({len(hues)} ratios, colour: k; no bands)"
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


def _sv_lines_colorbar(ax, df: pd.DataFrame, x: str, style: str | None) -> None:
    """Many σ_k/σ_1 lines: the replica median of each, coloured by k on a colour bar beside the
    axes, in its lower half (the legend of ``style``, or of lines added later, above it), so the
    key stays as short as the axes."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    cmap = plt.get_cmap("viridis")
    ks = df["k"].to_numpy()
    norm = Normalize(ks.min(), ks.max())
    styles = list(dict.fromkeys(df[style])) if style else [None]
    dashes = dict(zip(styles, ["-", "--", ":", "-."], strict=False))
    keys = ["k", style] if style else ["k"]
    for key, part in df.groupby(keys, sort=False):
        k, st = (key[0], key[1]) if style else (key[0], None)
        med = part.groupby(x, sort=True)["value"].median()
        ax.plot(med.index, med.to_numpy(), color=cmap(norm(k)), ls=dashes[st], lw=1.0)
    ax.set(xlabel=x, ylabel="value")  # as seaborn labels its own
    if style:
        handles = [Line2D([], [], color="0.25", ls=dashes[st]) for st in styles]
        ax.legend(
            handles,
            styles,
            title=style,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            frameon=False,
            borderaxespad=0.0,
        )
    cax = ax.inset_axes([1.03, 0.0, 0.025, 0.55])  # below the key's place (a legend, if any)
    bar = ax.figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax)
    bar.set_label("k in σₖ/σ₁")
    bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _sigma1_line(ax, s1: np.ndarray, x: np.ndarray, xname: str) -> None:
    """σ_1(Z) of each replica (rows of ``s1``) against ``x``: median and 10–90% band."""
    frame = pd.DataFrame({xname: np.tile(x, s1.shape[0]), "value": s1.ravel()})
    sns.lineplot(data=frame, x=xname, y="value", estimator="median", errorbar=BAND, ax=ax)


def singular_values(regime, cfg, inputs, png, pdf) -> None:
    """σ_k(Z)/σ_1(Z) against SGD step: replica median and 10–90% band (σ_1(Z) itself when Z has
    a single singular value)."""
    sgd = storage.open_dataset(inputs["sgd"])
    keep, note = _kept(sgd)
    step = sgd["step"].values
    pos = step > 0
    K = _meaningful_ranks(cfg)
    alg = _algorithm(sgd)
    xname = f"{'GD' if sgd.attrs.get('algorithm') == 'gd' else alg} step k"
    fig, ax = plt.subplots(figsize=(9.5, 5.4))
    if K > 1:
        _collapse_line(ax)
        df = _long(sgd["feature_sv"].values[:, pos], step[pos], xname, range(2, K + 1), keep)
        what = _sv_lines(ax, df, xname)
        ax.set(ylabel="σₖ(Z) / σ₁(Z)   (Z = ΘXᵀ)")
    else:  # nothing to divide: σ_1 itself
        _sigma1_line(ax, sgd["feature_sv"].values[keep][:, pos, 0], step[pos], xname)
        what = f"{ONE_SV_NOTE}: no ratios σₖ/σ₁, σ₁(Z) = ‖Z‖ itself\n{BAND_TEXT}"
        ax.set(ylabel="σ₁(Z)   (Z = ΘXᵀ)")
    ax.set(xscale="log", yscale="log")
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
