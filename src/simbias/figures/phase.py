"""A sweep's phase diagram: final effective rank and sharpness gap over two sweep axes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..sweeps import SWEEP_KEYS
from .style import FONT, _integer_axis, _plain_ticks, _pretty, _save, _theme
from .trajectory import GAP_FLOOR_REL

# a phase diagram writes each cell's value in it up to this many cells (12 x 12); past that the
# colours alone, and the tick labels thinned to what fits
PHASE_ANNOTATE_MAX = 144
# F − F* is written in its cells (2 significant digits) only while a row of them fits: at most
# this many characters per row of the panel (10 columns of "1.2e-13" overflowed their cells)
PHASE_FLOAT_ROW_CHARS = 40


def phase_diagram(base: str, table_csv: str, png: str, pdf: str) -> None:
    """Final effective rank and sharpness gap (or F) over the first two sweep axes, from the
    sweep's table (one row per grid point, :func:`simbias.stages.sweep_table`)."""
    _theme()
    sns.set_style("white")
    table = pd.read_csv(table_csv)
    axes_keys = [c for c in table.columns if c in SWEEP_KEYS]
    xk = axes_keys[0]
    yk = axes_keys[1] if len(axes_keys) > 1 else None
    gap_label = (
        "F at the flow's end\n(median; no F*)"
        if table["gap_is_F"].all()
        else "F − F* at the flow's end\n(median)"
    )
    titles = {
        "rank_sgd": "effective rank of Z at SGD's end\n(median replica)",
        "rank_flow": "effective rank of Z at the flow's end\n(median replica)",
        "gap": gap_label,
    }
    fig, axs = plt.subplots(1, 3, figsize=(17, 5))
    for ax, col, fmt in zip(axs, list(titles), ["d", "d", "g"], strict=True):
        title = titles[col]
        if yk is None:
            sns.barplot(data=table, x=xk, y=col, ax=ax)
            if col != "gap":
                _integer_axis(ax)
        else:
            grid = table.pivot_table(index=yk, columns=xk, values=col, dropna=False)  # failed points: blank
            # NaN cells (failed points) are masked by the heatmap, so their annotation is never drawn
            if fmt == "d":
                annot = grid.fillna(0).round().astype(int).astype(str)
            else:
                annot = grid.map(lambda v: f"{v:.2g}")
            lo, hi = np.nanmin(grid.values), np.nanmax(grid.values)
            scale = max(abs(lo), abs(hi), 1e-300)
            # F − F* within round-off of 0 at every point that ran (the Theorem 2 minimum reached)
            g = table["gap"].dropna()
            roundoff = col == "gap" and g.size > 0 and bool((g.abs() <= table["gap_floor"][g.index]).all())
            if hi - lo <= 1e-6 * scale or roundoff:  # equal up to round-off: one colour, not amplified noise
                same = "the same at every grid point" if hi == lo else "equal across the grid to 1e-6"
                lo, hi = lo - scale, hi + scale
                if roundoff:  # the colour scale spans the round-off band: one colour
                    same = f"0 to round-off everywhere: |F − F*| ≤ {GAP_FLOOR_REL:g}·F*"
                    lo, hi = -float(table["gap_floor"].max()), float(table["gap_floor"].max())
                title += f"\n({same})"
            few = grid.size <= PHASE_ANNOTATE_MAX  # numbers in the cells only while they can be read
            if fmt != "d":  # and not round-off noise (the title says so), nor wider than the cells
                width = max(len(t) for t in annot.values.ravel()) * grid.shape[1]
                few = few and not roundoff and width <= PHASE_FLOAT_ROW_CHARS
            grid = grid.set_axis([f"{v:.3g}" for v in grid.index], axis=0)
            grid = grid.set_axis([f"{v:.3g}" for v in grid.columns], axis=1)
            sns.heatmap(
                grid,
                annot=annot.values if few else False,
                fmt="",
                ax=ax,
                xticklabels="auto",
                yticklabels="auto",
                cmap="viridis",
                vmin=lo,
                vmax=hi,
                cbar_kws={"label": titles[col].split("\n")[0]},
            )
            if fmt == "d":
                _integer_axis(ax.collections[0].colorbar.ax)
            else:  # each tick its own value: a shared "1e−12" above the bar ran into the title
                _plain_ticks(ax.collections[0].colorbar.ax)
            for i, j in zip(*np.nonzero(np.isnan(grid.values)), strict=True):
                ax.text(j + 0.5, i + 0.5, "failed", ha="center", va="center", fontsize=FONT["note"])
            ax.invert_yaxis()
            ax.set(xlabel=_pretty(xk), ylabel=_pretty(yk))
        ax.set_title(title)
    note = f"; {int(table['diverged'].sum())} diverged replicas left out" if table["diverged"].sum() else ""
    fig.suptitle(f"sweep {base}: {len(table)} grid points over {', '.join(map(_pretty, axes_keys))}{note}")
    _save(fig, png, pdf)
