"""Per-regime figures read by a stranger (issue 27): every legend, colour bar and note inside the
canvas, the hand-over note beside the data rather than on it, a colour bar for k past a handful
of singular-value ratios, and figures drawn for what exists (one singular value, n = d = 1;
tanh with saturated neurons, where JJᵀ is singular). The inputs are real runs of tiny regimes
through the stage functions, in a temporary folder; the figures are drawn in-process and
measured with the renderer's extents."""

import importlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Annotation
from test_reliability import resolved, run_stages

from simbias import figures, storage
from simbias.figures import style
from simbias.stages.brute_force import run_brute_force
from simbias.stages.compare import compare

KINDS = ("singular_values", "trajectory", "neuron_pca", "structure")

# A legend with more lines than this no longer fits beside one panel of a trajectory figure.
MAX_LEGEND_ENTRIES = 14

WIDE = dict(m=66, d=65, n=65, eta=0.002, replicas=2, sgd={"steps": 20, "log_points": 4, "linear_points": 2})

# (regime fields, what it stands for)
CASES = {
    # fig1a's shape: three singular values, the flow descends to the round-off floor
    "fig1a_like": dict(m=10, d=3, n=3, sigma=0.1, sgd={"steps": 2000, "log_points": 20, "linear_points": 4}),
    # research width in small: 64 ratios σ_k/σ_1 (the (1024, 128, 64) has 63)
    "wide": dict(WIDE, flow={"records": 4, "tau_max": 1e-3}),
    # eight ratios, and SGD continued past the hand-over (brute_force's 5-sd tolerance needs
    # the eigenvalues of a (md)² matrix: too slow at the wide case's width for a test)
    "mid": dict(
        m=12, d=9, n=9, sigma=0.1, replicas=2, sgd={"steps": 300}, flow={"records": 5, "tau_max": 0.05}
    ),
    "wide_gd": dict(WIDE, sigma=0, algorithm={"name": "gd"}),
    # one input, one feature: Z has a single singular value, every neuron goes to φ⁻¹(y/m)
    "one": dict(m=5, d=1, n=1, sigma=0.1, sgd={"steps": 3000}),
    # tanh with θ0 ~ N(0, 1e6²): every neuron saturated, φ′ = 0, JJᵀ singular, the flow cannot start
    "tanh_saturated": dict(
        activation={"name": "tanh"}, init={"scale": 1e6}, replicas=2, sgd={"steps": 100, "log_points": 10}
    ),
}


# cases that also continue SGD past the hand-over (figures sgd_alone and brute_force)
BRUTE = {"fig1a_like": 500, "mid": 200}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[dict, dict[str, Path]]]:
    out = {}
    for name, fields in CASES.items():
        folder = tmp_path_factory.mktemp(name)
        cfg = resolved(**fields, brute_force={"steps": BRUTE.get(name, 0)})
        p = run_stages(folder, cfg, name)
        if name in BRUTE:
            p["brute"] = folder / "brute_force.nc"
            run_brute_force(name, cfg, p["data"], p["sgd"], p["brute"])
            csv = folder / "comparison.csv"
            compare(name, cfg, p["data"], p["sgd"], p["flow"], p["comparison"], csv, brute_path=p["brute"])
        out[name] = cfg, p
    return out


@pytest.fixture(scope="module")
def draw(tmp_path_factory):
    """draw(runs, case, kind) -> the saved figure, laid out as in its PNG (drawn again after
    saving); each figure is drawn once per module."""
    real_save = style._save
    saved, cache = [], {}
    out = tmp_path_factory.mktemp("figures")

    def save(fig, png, pdf):
        real_save(fig, png, pdf)  # lays it out, saves and closes it
        FigureCanvasAgg(fig).draw()  # a canvas again, to measure
        saved.append(fig)

    def _draw(runs, case: str, kind: str):
        if (case, kind) not in cache:
            cfg, paths = runs[case]
            inputs = {k: str(v) for k, v in paths.items()}
            png = out / f"{case}_{kind}.png"
            figures.draw(kind, case, cfg, inputs, str(png), str(out / f"{case}_{kind}.pdf"))
            assert png.stat().st_size > 1000
            cache[case, kind] = saved[-1]
        return cache[case, kind]

    with pytest.MonkeyPatch.context() as mp:
        for mod in ("brute_force", "singular_values", "structure", "trajectory"):  # each imported _save
            mp.setattr(importlib.import_module(f"simbias.figures.{mod}"), "_save", save)
        yield _draw


def _inside(bb, outer, tol: float = 1.0) -> bool:
    return (
        bb.x0 >= outer.x0 - tol
        and bb.y0 >= outer.y0 - tol
        and bb.x1 <= outer.x1 + tol
        and bb.y1 <= outer.y1 + tol
    )


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _axes(fig) -> list:
    """Every axes, colour bars drawn in inset axes included."""
    return [a for ax in fig.axes for a in (ax, *ax.child_axes)]


def _legends(fig) -> list:
    return [leg for ax in _axes(fig) if (leg := ax.get_legend()) is not None] + list(fig.legends)


def _off_canvas(fig) -> list[str]:
    """What lies (partly) outside the figure: legends, axes with their ticks, labels, notes and
    colour bars, the title."""
    r = fig.canvas.get_renderer()
    out = []
    for leg in _legends(fig):
        if not _inside(leg.get_window_extent(r), fig.bbox):
            out.append(f"legend {[t.get_text() for t in leg.get_texts()][:3]}…")
    for ax in _axes(fig):
        if not _inside(ax.get_tightbbox(r), fig.bbox):
            out.append(f"axes {ax.get_ylabel()!r} (with its ticks, labels, notes)")
    for t in fig.texts:
        if t.get_text() and not _inside(t.get_window_extent(r), fig.bbox):
            out.append(f"text {t.get_text()[:40]!r}")
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_every_legend_and_colour_bar_stays_inside_the_canvas(runs, draw, case):
    for kind in KINDS + (("sgd_alone", "brute_force") if case in BRUTE else ()):
        fig = draw(runs, case, kind)
        assert not _off_canvas(fig), (kind, _off_canvas(fig))
        # a key no longer than a panel: past a handful of ratios or clusters, one entry for them all
        for leg in _legends(fig):
            assert len(leg.get_texts()) <= MAX_LEGEND_ENTRIES, (kind, len(leg.get_texts()))


def test_many_ratios_get_a_colour_bar_for_k(runs, draw):
    for case in ("wide", "wide_gd"):
        fig = draw(runs, case, "trajectory")
        bars = [ax for ax in _axes(fig) if "k in" in ax.get_ylabel()]
        assert len(bars) == 1, [ax.get_ylabel() for ax in _axes(fig)]
        lo, hi = bars[0].get_ylim()
        assert (lo, hi) == (2, 65)  # k = 2 … min(m, d, n)
        texts = [t.get_text() for leg in _legends(fig) for t in leg.get_texts()]
        assert not any("/σ₁" in t for t in texts), texts  # no legend line per ratio
    fig = draw(runs, "wide", "singular_values")
    assert fig.axes[0].get_xlabel() == "label-noise SGD step k"  # as when seaborn draws the lines
    assert [ax.get_ylabel() for ax in _axes(fig)][1] == "k in σₖ/σ₁"
    fig = draw(runs, "fig1a_like", "trajectory")  # two ratios: a legend, bands, no colour bar
    texts = [t.get_text() for leg in _legends(fig) for t in leg.get_texts()]
    assert "σ₂/σ₁" in texts and "σ₃/σ₁" in texts
    assert not any("k in" in ax.get_ylabel() for ax in _axes(fig))


def _handover_note(fig):
    notes = [t for t in fig.axes[0].texts if "hand-over" in t.get_text()]
    assert len(notes) == 1, [t.get_text() for t in fig.axes[0].texts]
    return notes[0]


@pytest.mark.parametrize("case", ["fig1a_like", "wide", "one"])
def test_the_handover_note_covers_no_data(runs, draw, case):
    """The note lives beside the top panel, outside the axes where the curves are (it covered the
    flow's descent to the round-off floor in fig1a), and off the legend above it."""
    fig = draw(runs, case, "trajectory")
    r = fig.canvas.get_renderer()
    note = _handover_note(fig).get_window_extent(r)
    for ax in _axes(fig):
        assert not _overlap(note, ax.get_window_extent(r)), f"the note lies on the axes {ax.get_ylabel()!r}"
    for leg in _legends(fig):
        assert not _overlap(note, leg.get_window_extent(r))
    assert _inside(note, fig.bbox)
    # and it says what it measures
    text = _handover_note(fig).get_text().replace("\n", " ")
    assert "of ‖θ(end) − θ(0)‖" in text and "how far the whole run takes θ" in text


def test_one_input_and_one_feature_draws_what_exists(runs, draw):
    """n = d = 1: Z has one singular value. No ratio panel (said in the title), σ₁(Z) itself in
    the singular-value figure, each neuron's z against τ instead of a PCA plane; the flow ends
    at the Theorem 2 point (every neuron at φ⁻¹(y/m))."""
    cfg, paths = runs["one"]
    table = pd.read_csv(paths["comparison"].with_suffix(".csv"))
    assert (table["flow_status"] == "converged").all() and (table["z_dist_flow_end"] < 1e-9).all()
    assert table["reached_theorem2_point"].all()
    fig = draw(runs, "one", "trajectory")
    assert len(fig.axes) == 2 and "single singular value" in fig._suptitle.get_text()
    fig = draw(runs, "one", "singular_values")
    assert fig.axes[0].get_ylabel().startswith("σ₁(Z)") and "single singular value" in fig.axes[0].get_title()
    fig = draw(runs, "one", "neuron_pca")
    assert fig.axes[0].get_xscale() == "log" and "z_j" in fig.axes[0].get_ylabel()
    data = storage.open_dataset(paths["data"])
    z_star = [ln.get_ydata()[0] for ln in fig.axes[0].lines if ln.get_label().startswith("z*")]
    y, m = float(data["y"].values[0]), cfg["m"]
    assert len(z_star) == 1 and z_star[0] == pytest.approx(_inverse_cubic(y / m), rel=1e-9)


def _inverse_cubic(v: float, nu: float = 0.1) -> float:
    """φ⁻¹(v) for φ(z) = z³ + νz (the default activation)."""
    roots = np.roots([1.0, 0.0, nu, -v])
    return float(roots[np.argmin(np.abs(roots.imag))].real)


def test_saturated_tanh_draws_and_says_why_panels_are_empty(runs, draw):
    """tanh with init.scale 1e6: φ′ = 0 in floating point, so F = 0 and JJᵀ is singular at every
    SGD iterate and the flow cannot start. Every figure is drawn (it crashed on a singular
    matrix); the trajectory says what is missing and why."""
    _, paths = runs["tanh_saturated"]
    assert set(storage.open_dataset(paths["flow"])["status"].values) == {"retraction_failed"}
    for kind in KINDS:
        draw(runs, "tanh_saturated", kind)
    fig = draw(runs, "tanh_saturated", "trajectory")
    notes = " ".join(t.get_text().replace("\n", " ") for ax in fig.axes for t in ax.texts)
    assert "JJᵀ is singular" in notes and "F = 0 at" in notes
    assert "the flow did not start for any replica (flow status: retraction_failed × 2)" in notes
    # several notes beside one panel: stacked, none on another, none on the data
    r = fig.canvas.get_renderer()
    for ax in fig.axes:
        boxes = [t.get_window_extent(r) for t in ax.texts if isinstance(t, Annotation)]
        assert not any(_overlap(b, ax.get_window_extent(r)) for b in boxes)
        assert not any(_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert [len([t for t in ax.texts if isinstance(t, Annotation)]) for ax in fig.axes] == [3, 2, 0]
