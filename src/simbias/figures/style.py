"""What every figure shares: the theme and type sizes, Unicode notation, legends, the header
and notes, which replicas are drawn, and saving (PNG and PDF)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from .. import storage
from ..activations import make_activation, pretty

BAND = ("pi", 80)  # seaborn errorbar: the band holds the middle 80% of replicas


BAND_TEXT = "line: median over replicas; band: 10th–90th percentile"


# One type size for every text of a figure (titles, labels, legends, ticks); one notation (Unicode
# symbols, as in the paper).
FONT = {"title": 11, "label": 11, "legend": 9.5, "tick": 10, "note": 9.5}


def _sub(k: int) -> str:
    """An integer as Unicode subscript digits (σ₁₀)."""
    return str(k).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))


def _theme() -> None:
    sns.set_theme(
        style="whitegrid",
        context="notebook",
        rc={
            "axes.titlesize": FONT["title"],
            "axes.labelsize": FONT["label"],
            "figure.titlesize": FONT["title"],
            "legend.fontsize": FONT["legend"],
            "legend.title_fontsize": FONT["legend"],
            "xtick.labelsize": FONT["tick"],
            "ytick.labelsize": FONT["tick"],
        },
    )


def _pretty(text: str) -> str:
    """Plain-text formulas in Unicode: z^3 -> z³, eta -> η, sigma -> σ, rho -> ρ, tau -> τ."""
    import re

    text = pretty(text)
    for word, sym in (("eta", "η"), ("sigma", "σ"), ("rho", "ρ"), ("tau", "τ")):
        text = re.sub(rf"\b{word}\b", sym, text)
    return text


def _algorithm(sgd) -> str:
    """Readable name of the algorithm that wrote sgd.nc."""
    return {"label_noise_sgd": "label-noise SGD", "gd": "gradient descent (control)", "one_sam": "1-SAM"}.get(
        sgd.attrs.get("algorithm", "label_noise_sgd"), "label-noise SGD"
    )


def _clock_label(sgd) -> str:
    """x-axis label: flow time and the algorithm's clock (short enough for the figure width)."""
    alg = sgd.attrs.get("algorithm", "label_noise_sgd")
    clock = {"label_noise_sgd": "τ = η²σ²k", "one_sam": "τ = ηρ²k/n"}.get(alg)
    if clock is None:  # GD has no clock: only the flow has a τ axis
        return "flow time τ (from the flow's start; GD has no clock)"
    return f"flow time τ  ({clock}, k = {_algorithm(sgd)} step)"


def _legend_outside(ax, title: str | None = None) -> None:
    """The legend to the right of the axes, one column, so it covers no data and keeps its groups."""
    if ax.get_legend() is not None or ax.get_legend_handles_labels()[0]:
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(
            handles,
            labels,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            ncol=1,
            title=title,
            frameon=False,
            borderaxespad=0.0,
        )


def _integer_axis(ax, axis: str = "y") -> None:
    """Ticks only at integers (ranks, counts)."""
    from matplotlib.ticker import MaxNLocator

    getattr(ax, f"{axis}axis").set_major_locator(MaxNLocator(integer=True))


def _plain_ticks(ax, axis: str = "y") -> None:
    """Tick labels to 3 significant digits each (4e-12, not 4 under a shared offset "1e−12")."""
    from matplotlib.ticker import FuncFormatter

    getattr(ax, f"{axis}axis").set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))


def _integer_band(v) -> tuple[float, float]:
    """10th–90th percentile band made of replica values (integers stay integers)."""
    return float(np.percentile(v, 10, method="lower")), float(np.percentile(v, 90, method="higher"))


def _header(regime: str, cfg: dict) -> str:
    act = make_activation(cfg["activation"])
    return (
        f"{regime}: m = {cfg['m']}, d = {cfg['d']}, n = {cfg['n']}, η = {cfg['eta']:g}, σ = {cfg['sigma']:g}, "
        f"φ(z) = {_pretty(act.describe())}"
    )


def _kept(sgd) -> tuple[np.ndarray, str]:
    keep = ~sgd["diverged"].values.astype(bool)
    R = keep.size
    if keep.all():
        return keep, f"{R} replicas"
    return keep, f"{keep.sum()} of {R} replicas ({R - keep.sum()} diverged, left out)"


def _mark_handover(axes, tau: float) -> None:
    """A dotted vertical line on every panel where SGD hands over to the flow, labelled on the
    top panel (on the line's left when it is near the right edge, to stay inside the axes)."""
    for ax in axes:
        ax.axvline(tau, color="k", lw=0.8, ls=":")
    ax = axes[0]
    x_axes = ax.transAxes.inverted().transform(ax.transData.transform((tau, ax.get_ylim()[1])))[0]
    right = x_axes > 0.8
    ax.text(
        tau,
        ax.get_ylim()[1],
        "SGD → flow " if right else " SGD → flow",
        va="top",
        ha="right" if right else "left",
        fontsize=FONT["note"],
    )


def _nanmedian(v) -> float:
    """Median of the finite values (NaN, without a warning, when there are none)."""
    v = np.asarray(v, dtype=float)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


# Characters per line of a note in the column right of a panel (the legends' column).
SIDE_NOTE_WIDTH = 48


def _side_note(ax, notes: list[tuple[str, str]]) -> None:
    """Notes (text, colour) in the column to the right of the axes, stacked upwards from its
    bottom, the first on top (the legends sit at the top): they cover no data. Lines are wrapped
    to that column's width."""
    import textwrap

    below = 0.0  # points taken by the notes under this one
    for text, color in reversed(notes):
        lines = [line for para in text.split("\n") for line in (textwrap.wrap(para, SIDE_NOTE_WIDTH) or [""])]
        ax.annotate(
            "\n".join(lines),
            xy=(1.01, 0.0),
            xycoords="axes fraction",
            xytext=(0.0, below),
            textcoords="offset points",
            ha="left",
            va="bottom",
            fontsize=FONT["note"],
            color=color,
        )
        below += (len(lines) + 0.5) * 1.2 * FONT["note"]  # the lines at matplotlib's spacing, and a gap


def _handover_text(cmp_, keep: np.ndarray) -> tuple[str, bool]:
    """The hand-over measured (medians over replicas): SGD's loss, F before and after, how far
    the retraction onto M moves θ and Z, as a fraction of θ's displacement over the whole run
    (comparison.nc's handover_* variables); and whether that fraction is not small."""
    from ..stages.compare import HANDOVER_SMALL

    def med(name: str) -> float:
        return _nanmedian(cmp_[name].values[keep]) if name in cmp_ else float("nan")

    if not np.isfinite(cmp_["handover_theta_move"].values[keep]).any():
        status = cmp_["flow_status"].values[keep].astype(str)
        counts = ", ".join(f"{v} × {c}" for v, c in zip(*np.unique(status, return_counts=True), strict=True))
        return f"no hand-over: the flow did not start\nfor any replica (flow status: {counts})", True
    ratio = med("handover_move_ratio")
    share = f"{100 * ratio:.2g}%" if np.isfinite(ratio) else "n/a"
    text = (
        "hand-over SGD → flow (medians over replicas):\n"
        f"SGD's loss {med('loss_sgd_end'):.2g}, F {med('sharpness_handover_before'):.4g} → "
        f"{med('sharpness_handover_after'):.4g}\n"
        f"the retraction onto M moves θ by {med('handover_theta_move'):.2g}\n"
        f"(max|Δz| {med('handover_z_move'):.2g}), {share} of ‖θ(end) − θ(0)‖\n"
        f"= {med('theta_displacement'):.2g}, how far the whole run takes θ"
    )
    big = bool(ratio > HANDOVER_SMALL)
    if big:
        text += (
            f"\nNOT small (> {100 * HANDOVER_SMALL:g}%): the flow starts visibly\n"
            "away from SGD's last iterate, which lies off M"
        )
    return text, big


def _save(fig, png: str, pdf: str) -> None:
    fig.tight_layout()
    for path in (png, pdf):
        with storage.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=130, format=path.rsplit(".", 1)[-1])
    plt.close(fig)
