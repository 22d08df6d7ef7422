"""Figures (seaborn), one module per kind; :func:`draw` draws the kind a rule asks for.

:mod:`.style` holds what every figure shares (theme, type sizes, notes, saving);
:mod:`.singular_values`, :mod:`.trajectory`, :mod:`.structure` (neuron PCA, rank and
clusters), :mod:`.brute_force` (SGD alone, SGD continued against the flow) draw one
regime; :mod:`.phase` draws a sweep's phase diagram.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported: files only, no display

from .brute_force import brute_force_overlay, sgd_alone  # noqa: E402
from .singular_values import singular_values  # noqa: E402
from .structure import gd_structure, neuron_pca, structure  # noqa: E402
from .style import _theme  # noqa: E402
from .trajectory import gd_trajectory, trajectory  # noqa: E402

KINDS = {
    "singular_values": singular_values,
    "trajectory": trajectory,
    "neuron_pca": neuron_pca,
    "structure": structure,
    # regimes with brute_force.steps > 0
    "sgd_alone": sgd_alone,
    "brute_force": brute_force_overlay,
}


def draw(kind: str, regime: str, cfg: dict, inputs: dict, png: str, pdf: str) -> None:
    _theme()
    if kind in ("trajectory", "structure") and cfg["algorithm"]["name"] == "gd":  # the control has no flow
        (gd_trajectory if kind == "trajectory" else gd_structure)(regime, cfg, inputs, png, pdf)
        return
    KINDS[kind](regime, cfg, inputs, png, pdf)
