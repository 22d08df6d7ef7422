"""A sweep whose grid point failed (every replica diverged) still gets its phase diagram,
with that cell blank and labelled "failed" (the comparison tables are from a real 2 × 2
sweep run on a tiny problem, eta = 1 diverging)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest

from simbias.figures import phase
from simbias.stages.summary import sweep_table

DATA = Path(__file__).parent / "data" / "phase_failed"


def test_phase_diagram_draws_failed_points_as_labelled_blanks(tmp_path, monkeypatch):
    points = {"sw__eta-0p05__sigma-0p1": 0.05, "sw__eta-1__sigma-0p1": 1.0}
    cfgs = {
        r: {"sweep_of": {"axes": ["eta", "sigma"], "base": "sw", "point": {"eta": eta, "sigma": 0.1}}}
        for r, eta in points.items()
    }
    texts, offsets = [], []
    real_save = phase._save

    def save(fig, png, pdf):
        texts.extend(t.get_text() for ax in fig.axes for t in ax.texts)
        texts.extend(ax.get_title() for ax in fig.axes)
        fig.canvas.draw()  # tick labels and offset texts exist once drawn
        offsets.extend(a.get_offset_text().get_text() for ax in fig.axes for a in (ax.xaxis, ax.yaxis))
        real_save(fig, png, pdf)

    monkeypatch.setattr(phase, "_save", save)
    csvs = [str(DATA / f"{r}.csv") for r in points]
    sweep_table(csvs, cfgs, str(tmp_path / "sw.csv"))
    table = pd.read_csv(tmp_path / "sw.csv")  # one row per grid point, the failed one included
    assert table["regime"].tolist() == list(points) and table["eta"].tolist() == [0.05, 1.0]
    assert table["diverged"].tolist()[1] == table["replicas"].tolist()[1] and table[
        "rank_flow"
    ].isna().tolist() == [
        False,
        True,
    ]
    phase.phase_diagram("sw", str(tmp_path / "sw.csv"), str(tmp_path / "p.png"), str(tmp_path / "p.pdf"))
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert texts.count("failed") == 3  # one cell in each of the three panels
    # the one point that ran reached the Theorem 2 minimum: its F − F* is round-off, and said so
    assert abs(table["gap"].iloc[0]) <= table["gap_floor"].iloc[0]
    assert any("0 to round-off everywhere" in t for t in texts)
    # no shared scale ("1e−14") above a colour bar, where it ran into the panel's title
    assert len(offsets) == 12 and not any(offsets), offsets


@pytest.mark.parametrize(
    "n_eta, n_sigma, gap, counts",
    [
        (12, 12, 1e-3, [144, 144, 0]),  # ranks written; 12 gaps of "0.011" overflow a row of cells
        (13, 12, 1e-3, [0, 0, 0]),  # past 12 x 12 cells: colours only
        (3, 3, 1e-3, [9, 9, 9]),  # a small grid: every value written
        (3, 3, 1e-15, [9, 9, 0]),  # F − F* round-off everywhere: said in the title, not written
    ],
)
def test_phase_diagram_writes_cell_values_only_while_readable(
    tmp_path, monkeypatch, n_eta, n_sigma, gap, counts
):
    """Cells carry their values only while they fit (a 1000-point grid, or ten columns of
    "-1.2e-13", were unreadable) and only where they are not round-off."""
    rows = [
        {
            "regime": f"sw{i}_{j}",
            "eta": 0.01 * (i + 1),
            "sigma": 0.1 * (j + 1),
            "replicas": 2,
            "diverged": 0,
            "rank_sgd": 3.0 - (i + j > 14),
            "rank_flow": 1.0,
            "gap": gap * i,
            "gap_is_F": False,
            "gap_floor": 1e-14,
        }
        for i in range(n_eta)
        for j in range(n_sigma)
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "sw.csv", index=False)
    texts = []
    real_save = phase._save

    def save(fig, png, pdf):
        texts.append([len(ax.texts) for ax in fig.axes[:3]])  # the three heatmaps (then their colour bars)
        texts.append([t.get_text() for t in fig.axes[2].texts])
        real_save(fig, png, pdf)

    monkeypatch.setattr(phase, "_save", save)
    phase.phase_diagram("sw", str(tmp_path / "sw.csv"), str(tmp_path / "p.png"), str(tmp_path / "p.pdf"))
    assert texts[0] == counts
    if counts[2]:  # F − F* with two significant digits, as the table has it
        assert sorted(set(texts[1])) == ["0", "0.001", "0.002"]
