"""The singular-values figure (the paper's Figure 1a for fig1a) makes the collapse legible: the
paper's 10⁻² line, dashed and in the legend, and the end medians of σ_k/σ_1 in the title, over
the replicas that did not diverge."""

import matplotlib

matplotlib.use("Agg")

import importlib

import numpy as np
import pytest
import xarray as xr

# the module (simbias.figures exports a function of the same name)
sv_fig = importlib.import_module("simbias.figures.singular_values")

CFG = {"m": 4, "d": 3, "n": 3, "eta": 0.05, "sigma": 0.03, "activation": {"name": "cubic", "k": 1, "nu": 0.1}}


def write_sgd(path, last_ratios, diverged, tau_per_step, algorithm="label_noise_sgd", step0=0):
    """An sgd.nc with the variables the figure reads; the last record's σ_k/σ_1 as given."""
    R, T = len(last_ratios), 6
    step = step0 + np.array([0, 1, 10, 100, 1000, 4000])
    rng = np.random.default_rng(0)
    sv = np.ones((R, T, 3))
    sv[:, :, 1:] = rng.uniform(0.05, 0.3, (R, T, 2))
    sv *= 2.0  # σ_1 = 2: the figure divides by it
    sv[:, -1, 1:] = 2.0 * np.asarray(last_ratios)
    ds = xr.Dataset(
        {
            "feature_sv": (("replica", "record", "k"), sv),
            "diverged": (("replica",), np.asarray(diverged, dtype=np.int8)),
            "tau": (("record",), step * tau_per_step),
            "step": (("record",), step),
        },
        attrs={"algorithm": algorithm},
    )
    ds.to_netcdf(path, engine="netcdf4")


@pytest.fixture
def drawn(monkeypatch, tmp_path):
    """Draw the figure and return (title, dashed horizontal lines' y and labels)."""
    seen = {}

    def save(fig, png, pdf):
        ax = fig.axes[0]
        seen["title"] = ax.get_title()
        seen["hlines"] = [
            (line.get_ydata()[0], line.get_label())
            for line in ax.get_lines()
            if line.get_linestyle() == "--" and line.get_ydata()[0] == line.get_ydata()[-1]
        ]
        seen["legend"] = [t.get_text() for t in ax.get_legend().get_texts()]
        matplotlib.pyplot.close(fig)

    monkeypatch.setattr(sv_fig, "_save", save)

    def draw(**kw):
        write_sgd(tmp_path / "sgd.nc", **kw)
        sv_fig.singular_values("r", CFG, {"sgd": str(tmp_path / "sgd.nc")}, "x.png", "x.pdf")
        return seen

    return draw


def test_title_states_end_medians_of_kept_replicas(drawn):
    ratios = [[3e-3, 1e-6], [5e-4, 2e-7], [8e-4, 4e-7], [9.0, 9.0]]  # the last replica diverged
    seen = drawn(last_ratios=ratios, diverged=[0, 0, 0, 1], tau_per_step=0.05**2 * 0.03**2 * 1e4)
    assert "3 of 4 replicas" in seen["title"]
    assert "median at step 4e+03 (τ = 90): σ₂/σ₁ = 8.0e-04, σ₃/σ₁ = 4.0e-07" in seen["title"]
    assert [y for y, _ in seen["hlines"]] == [sv_fig.COLLAPSE_LEVEL] == [1e-2]
    assert seen["hlines"][0][1] in seen["legend"]


def test_gd_has_no_clock_in_the_end_line(drawn):
    seen = drawn(last_ratios=[[0.2, 0.1], [0.4, 0.3]], diverged=[0, 0], tau_per_step=0.0, algorithm="gd")
    assert "median at step 4e+03: σ₂/σ₁ = 3.0e-01, σ₃/σ₁ = 2.0e-01" in seen["title"]


def test_sgd_alone_names_its_own_hand_over(monkeypatch, tmp_path):
    """`snakemake paper`'s SGD-alone figure: the hand-over line names the regime that hands over
    there (fig2_paper's is not fig1a's), and the title ends with the end medians."""
    bf_fig = importlib.import_module("simbias.figures.brute_force")
    seen = {}

    def save(fig, png, pdf):
        ax = fig.axes[0]
        legends = [ax.get_legend(), *fig.legends]
        texts = [t.get_text() for t in ax.texts]
        texts += [t.get_text() for lg in legends if lg is not None for t in lg.get_texts()]
        seen["title"], seen["texts"] = ax.get_title(), texts
        matplotlib.pyplot.close(fig)

    monkeypatch.setattr(bf_fig, "_save", save)
    write_sgd(tmp_path / "sgd.nc", last_ratios=[[0.1, 0.05]] * 2, diverged=[0, 0], tau_per_step=1e-4)
    last = [[2e-3, 1e-5], [4e-3, 3e-5]]
    write_sgd(tmp_path / "brute.nc", last_ratios=last, diverged=[0, 0], tau_per_step=1e-4, step0=4000)
    inputs = {"sgd": str(tmp_path / "sgd.nc"), "brute": str(tmp_path / "brute.nc")}
    bf_fig.sgd_alone("fig2_paper", dict(CFG, eta=0.1, sigma=0.1), inputs, "x.png", "x.pdf")
    assert any(t.startswith("fig2_paper hands over to") for t in seen["texts"]), seen["texts"]
    assert not any("fig1a" in t for t in seen["texts"]), seen["texts"]
    assert "median at step 8e+03 (τ = 0.8): σ₂/σ₁ = 3.0e-03, σ₃/σ₁ = 2.0e-05" in seen["title"]
