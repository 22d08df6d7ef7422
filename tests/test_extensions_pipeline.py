"""The beyond-the-paper regimes run from config.yaml alone (`snakemake extensions`)."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from test_outputs_doc import build_report, embedded_pages

REPO = Path(__file__).resolve().parents[1]
CONFIG = Path(__file__).parent / "data" / "tiny_extensions.yaml"


@pytest.fixture(scope="module")
def ext_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("ext")
    shutil.copy(CONFIG, work / "config.yaml")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work), "--cores", "2"]
    proc = subprocess.run(cmd + ["extensions"], capture_output=True, text=True, cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work / "results"


def test_every_extension_regime_has_its_outputs(ext_run):
    regimes = ["x_tanh", "x_weights", "x_gd", "x_sam"] + [
        f"x_sweep__eta-{e}__sigma-{s}" for e in ("0p02", "0p05") for s in ("0p1", "0p2")
    ]
    for r in regimes:
        for f in ("data.nc", "sgd.nc", "flow.nc", "comparison.nc", "comparison.csv"):
            assert (ext_run / r / f).exists(), (r, f)
        for kind in ("singular_values", "trajectory", "neuron_pca", "structure"):
            assert (ext_run / "figures" / f"{r}_{kind}.png").stat().st_size > 1000
    assert (ext_run / "figures" / "x_sweep_phase.png").stat().st_size > 1000
    table = pd.read_csv(ext_run / "sweeps" / "x_sweep.csv")  # what the phase diagram reads
    assert sorted(table["regime"]) == sorted(regimes[4:]) and {"eta", "sigma", "rank_flow"} <= set(table)
    summary = pd.read_csv(ext_run / "summary_extensions.csv")
    assert set(summary["regime"]) == set(regimes)


def test_sweep_chunks_ran_as_one_job_per_stage(ext_run):
    """group_size 3 over 4 points: two jobs per stage, the first running its points' SGD as one call."""
    logs = ext_run.parent / "logs" / "sweeps" / "x_sweep"
    assert sorted(p.name for p in logs.iterdir()) == ["group000", "group001"]
    for stage in ("make_data", "run_sgd", "run_flow", "compare"):
        assert (logs / "group000" / f"{stage}.log").exists() and (logs / "group001" / f"{stage}.log").exists()
    assert (
        "300 steps x 6 replicas (3 points x 2) in one call" in (logs / "group000" / "run_sgd.log").read_text()
    )
    point_logs = ext_run.parent / "logs" / "x_sweep__eta-0p02__sigma-0p1"
    assert sorted(p.name for p in point_logs.iterdir()) == ["figures.log"]  # no per-point stage jobs
    for r in ("x_sweep__eta-0p02__sigma-0p1", "x_sweep__eta-0p05__sigma-0p2"):
        assert (ext_run / r / "comparison.html").stat().st_size > 500


def test_out_of_theory_activation_is_flagged(ext_run):
    cmp_ = xr.open_dataset(ext_run / "x_tanh" / "comparison.nc")
    assert cmp_.attrs["theorem2_applicable"] == 0 and "tanh" in cmp_.attrs["theorem2_reason"]
    assert np.all(np.isnan(cmp_["z_dist_flow_end"])) and np.all(np.isnan(cmp_["tau_eps_theorem3_bound"]))
    df = pd.read_csv(ext_run / "x_tanh" / "comparison.csv")
    assert df["not_applicable_reason"].str.contains("Assumption 1 fails").all()


def test_weighted_targets_and_algorithms(ext_run):
    df = pd.read_csv(ext_run / "x_weights" / "comparison.csv")
    assert (df["z_dist_flow_end"] <= 1e-6).all()  # the weighted Theorem 2 point
    gd = xr.open_dataset(ext_run / "x_gd" / "sgd.nc")
    assert gd.attrs["algorithm"] == "gd" and np.all(np.isnan(gd["tau"]))  # GD has no clock
    sam = xr.open_dataset(ext_run / "x_sam" / "sgd.nc")
    assert sam.attrs["algorithm"] == "one_sam"
    np.testing.assert_allclose(sam["tau"], 0.05 * 0.1**2 * sam["step"] / 2)  # τ = ηρ²k/n


def test_report_of_the_extensions_target(ext_run, tmp_path):
    """The README's `snakemake --report report_extensions.html extensions`, with a grouped sweep
    (whose compare jobs have no {regime} wildcard): every table is in it, readable, n/a as text."""
    html = build_report(ext_run.parent, tmp_path / "report_extensions.html", "extensions")
    pages = embedded_pages(html)
    points = [f"x_sweep__eta-{e}__sigma-{s}" for e in ("0p02", "0p05") for s in ("0p1", "0p2")]
    for regime in ["x_tanh", "x_weights", "x_gd", "x_sam", *points]:
        page = pages[f"results/{regime}/comparison.html"]
        assert f"<h1>{regime}: comparison with the theory" in page and "flow_status" in page
        assert "Resolved configuration of this regime" in page
    for regime in points:  # each grid point's page holds its own configuration
        sigma = 0.1 if regime.endswith("0p1") else 0.2
        assert f'"sigma": {sigma},' in pages[f"results/{regime}/comparison.html"]
    # tanh is outside the theory: its theory columns read n/a (not blank), the reason given once
    tanh = pages["results/x_tanh/comparison.html"]
    assert tanh.count(">n/a</td>") >= 2 * 4 and "<td></td>" not in tanh
    assert "Assumption 1 fails" in tanh.split("<table>")[0]
    # the columns come in tabs, every one of them in "all columns"
    assert re.findall(r'<label for="tab\d+">([^<]*)</label>', tanh)[-1] == "all columns"
    summary = pages["results/summary_extensions.html"]
    assert all(r in summary for r in points) and ">n/a</td>" in summary
    grid = pages["results/sweeps/x_sweep.html"]  # the sweep's table, one row per grid point
    assert grid.count("<tr>") == 1 + len(points) and "rank_flow" in grid
    # the menu lists the sweep once, its points inside; the regime table one row for it
    categories = json.loads(re.search(r"var categories = (\{.*?\});\n", html).group(1))
    assert sorted(categories["x_sweep"]) == sorted(points) and not set(points) & set(categories)
    table = html.split("Regimes in this run", 1)[1].split("</table>", 1)[0]
    assert "x_sweep</tt> (sweep, 4 points)" in table
