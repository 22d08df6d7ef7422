"""The beyond-the-paper regimes run from config.yaml alone (`snakemake extensions`)."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

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
