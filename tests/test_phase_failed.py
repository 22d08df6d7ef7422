"""A sweep whose grid point failed (every replica diverged) still gets its phase diagram,
with that cell blank and labelled "failed" (the comparison tables are from a real 2 × 2
sweep run on a tiny problem, eta = 1 diverging)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd

from simbias import figures, stages

DATA = Path(__file__).parent / "data" / "phase_failed"


def test_phase_diagram_draws_failed_points_as_labelled_blanks(tmp_path, monkeypatch):
    points = {"sw__eta-0p05__sigma-0p1": 0.05, "sw__eta-1__sigma-0p1": 1.0}
    cfgs = {
        r: {"sweep_of": {"axes": ["eta", "sigma"], "base": "sw", "point": {"eta": eta, "sigma": 0.1}}}
        for r, eta in points.items()
    }
    texts = []
    real_save = figures._save

    def save(fig, png, pdf):
        texts.extend(t.get_text() for ax in fig.axes for t in ax.texts)
        texts.extend(ax.get_title() for ax in fig.axes)
        real_save(fig, png, pdf)

    monkeypatch.setattr(figures, "_save", save)
    csvs = [str(DATA / f"{r}.csv") for r in points]
    stages.sweep_table(csvs, cfgs, str(tmp_path / "sw.csv"))
    table = pd.read_csv(tmp_path / "sw.csv")  # one row per grid point, the failed one included
    assert table["regime"].tolist() == list(points) and table["eta"].tolist() == [0.05, 1.0]
    assert table["diverged"].tolist()[1] == table["replicas"].tolist()[1] and table[
        "rank_flow"
    ].isna().tolist() == [
        False,
        True,
    ]
    figures.phase_diagram("sw", str(tmp_path / "sw.csv"), str(tmp_path / "p.png"), str(tmp_path / "p.pdf"))
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert texts.count("failed") == 3  # one cell in each of the three panels
    # the one point that ran reached the Theorem 2 minimum: its F − F* is round-off, and said so
    assert abs(table["gap"].iloc[0]) <= table["gap_floor"].iloc[0]
    assert any("0 to round-off everywhere" in t for t in texts)
