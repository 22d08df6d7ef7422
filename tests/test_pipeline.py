"""End to end: the tiny config through Snakemake, the output contract, rerun scope, bad input."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = Path(__file__).parent / "data" / "tiny.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2"]

GLOBAL_ATTRS = [
    "regime",
    "config_json",
    "config_sha256",
    "package_version",
    "backend",
    "dtype",
    "created",
    "Conventions",
]
CONTRACT = {
    "data.nc": {
        "x": ("sample", "feature"),
        "y": ("sample",),
        "w": ("neuron",),
        "theta0": ("replica", "neuron", "feature"),
    },
    "sgd.nc": {
        "theta": ("replica", "record", "neuron", "feature"),
        "loss": ("replica", "record"),
        "sharpness": ("replica", "record"),
        "feature_sv": ("replica", "record", "rank"),
        "weight_sv": ("replica", "record", "rank"),
        "diverged": ("replica",),
        "step": ("record",),
        "tau": ("record",),
    },
    "flow.nc": {
        "theta": ("replica", "record", "neuron", "feature"),
        "loss": ("replica", "record"),
        "sharpness": ("replica", "record"),
        "grad_norm": ("replica", "record"),
        "feature_sv": ("replica", "record", "rank"),
        "tau": ("record",),
    },
    "comparison.nc": {
        "z_dist_sgd_end": ("replica",),
        "z_dist_flow_end": ("replica",),
        "sharpness_gap": ("replica",),
        "grad_norm_end": ("replica",),
        "tau_eps_observed": ("replica",),
        "tau_eps_theorem3_bound": ("replica",),
        "feature_rank_flow_end": ("replica",),
    },
}


def smk(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        SNAKEMAKE + ["-d", str(workdir), *args], capture_output=True, text=True, cwd=workdir
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("tiny")
    shutil.copy(TINY, work / "config.yaml")
    proc = smk(work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work


def test_outputs_follow_contract(tiny_run):
    res = tiny_run / "results"
    for regime in ("tiny_a", "tiny_b"):
        for fname, variables in CONTRACT.items():
            ds = xr.open_dataset(res / regime / fname)
            for attr in GLOBAL_ATTRS:
                assert attr in ds.attrs, (fname, attr)
            assert ds.attrs["regime"] == regime and ds.attrs["Conventions"].startswith("CF-")
            for name, dims in variables.items():
                assert ds[name].dims == dims, (fname, name, ds[name].dims)
            for name in ds.variables:
                assert "long_name" in ds[name].attrs, (fname, name)
                # units on every quantity; none on index coordinates and text (CF needs none there)
                quantity = name not in ("replica", "rank") and ds[name].dtype.kind not in "OUS"
                assert ("units" in ds[name].attrs) == quantity, (fname, name)
            ds.close()
        assert (res / regime / "comparison.csv").exists()
        for kind in ("singular_values", "trajectory", "neuron_pca"):
            for ext in ("png", "pdf"):
                assert (res / "figures" / f"{regime}_{kind}.{ext}").stat().st_size > 1000
    assert (res / "summary.csv").exists()


def test_tiny_results_are_sensible(tiny_run):
    res = tiny_run / "results"
    sgd = xr.open_dataset(res / "tiny_a" / "sgd.nc")
    np.testing.assert_allclose(sgd["tau"], 0.05**2 * 0.2**2 * sgd["step"])
    flow = xr.open_dataset(res / "tiny_a" / "flow.nc")
    assert float(flow["tau"][0]) == pytest.approx(float(sgd["tau"][-1]))  # the flow continues SGD's clock
    assert np.nanmax(flow["loss"]) <= 1e-20
    cmp_ = xr.open_dataset(res / "tiny_a" / "comparison.nc")
    assert np.all(cmp_["z_dist_flow_end"] <= 1e-6)
    cmp_b = xr.open_dataset(res / "tiny_b" / "comparison.nc")  # n > d: not applicable, NaN plus a flag
    assert np.all(np.isnan(cmp_b["z_dist_flow_end"])) and cmp_b.attrs["theorem2_applicable"] == 0
    assert "n = 3 > d = 2" in cmp_b.attrs["theorem2_reason"]


def test_editing_one_sigma_reruns_only_that_regime(tiny_run, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(tiny_run, work, symlinks=True)
    proc = smk(work, "-n")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["regimes"]["tiny_a"]["sigma"] = 0.25
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = smk(work, "-n")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    regimes = set(re.findall(r"regime=(\w+)", out))
    rules = set(re.findall(r"^rule (\w+):", out, flags=re.M)) | set(
        re.findall(r"^localrule (\w+):", out, flags=re.M)
    )
    assert regimes == {"tiny_a"}, out
    assert "run_sgd" in rules and "make_data" not in rules, rules


def test_bad_config_is_refused_before_anything_is_written(tiny_run, tmp_path):
    work = tmp_path / "bad"
    work.mkdir()
    cfg = yaml.safe_load(TINY.read_text())
    cfg["regimes"]["tiny_b"]["sigma"] = -1.0
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = smk(work)
    assert proc.returncode != 0
    assert "regime 'tiny_b', field 'sigma'" in proc.stderr + proc.stdout
    assert not (work / "results").exists()


def test_configfile_adds_and_merges_regimes(tiny_run, tmp_path):
    """`--configfile extra.yaml` adds its regimes to config.yaml's and overrides only the fields it gives."""
    work = tmp_path / "extra"
    shutil.copytree(tiny_run, work, symlinks=True)
    extra = {
        "regimes": {
            "tiny_b": {"sigma": 0.1},  # known regime: only sigma changes, m, d, n, ... stay
            "tiny_c": {"m": 3, "d": 3, "n": 2, "eta": 0.05, "sigma": 0.2, "replicas": 2},
        }
    }
    (work / "extra.yaml").write_text(yaml.safe_dump(extra))
    proc = smk(work, "-n", "--configfile", "extra.yaml")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert set(re.findall(r"regime=(\w+)", out)) == {"tiny_b", "tiny_c"}, out
    proc = smk(work, "results/tiny_b/sgd.nc", "--configfile", "extra.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with xr.open_dataset(work / "results" / "tiny_b" / "sgd.nc") as sgd:
        cfg = json.loads(sgd.attrs["config_json"])
    assert (cfg["sigma"], cfg["m"], cfg["d"], cfg["n"], cfg["replicas"]) == (0.1, 4, 2, 3, 2)
    # the extra file's new regime goes into a summary of its own: summary.csv keeps config.yaml's
    proc = smk(work, "-n", "--configfile", "extra.yaml", "-p")
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?rule )", proc.stdout):
        out = re.search(r"output: (\S+)", block)
        if out:
            jobs[out.group(1)] = block
    assert "tiny_c" not in jobs["results/summary.csv"] and "tiny_b" in jobs["results/summary.csv"]
    assert "results/tiny_c/comparison.csv" in jobs["results/summary_extra.csv"]
    assert "tiny_b" not in jobs["results/summary_extra.csv"]
    # a bad field in the extra file is refused like one in config.yaml, before anything runs
    (work / "bad.yaml").write_text(yaml.safe_dump({"regimes": {"tiny_c": {"sigmaa": 1}}}))
    proc = smk(work, "-n", "--configfile", "bad.yaml")
    assert proc.returncode != 0 and "regime 'tiny_c', field 'sigmaa'" in proc.stderr + proc.stdout


def test_end_states_and_types(tiny_run):
    """flow.nc's end state beside θ_end; counts are integers; yes/no read back as bool everywhere."""
    from simbias import model
    from simbias.activations import make_activation

    res = tiny_run / "results" / "tiny_a"
    with xr.open_dataset(res / "flow.nc") as fl, xr.open_dataset(res / "data.nc") as data:
        cfg = json.loads(fl.attrs["config_json"])
        act = make_activation(cfg["activation"])
        th = fl["theta_end"].values
        X, y, w = data["x"].values, data["y"].values, data["w"].values
        np.testing.assert_allclose(fl["sharpness_end"], model.sharpness(np, act, th, X, w), rtol=1e-12)
        np.testing.assert_allclose(fl["loss_end"], model.loss(np, act, th, X, y, w), atol=1e-20)
        sv = np.linalg.svd(th @ X.T, compute_uv=False)
        np.testing.assert_allclose(fl["feature_sv_end"].values[:, : sv.shape[1]], sv, rtol=1e-10)
        # the last record is NaN for a replica that stopped early; the end state never is
        assert np.isfinite(fl["sharpness_end"]).all()
        assert fl["nfev"].dtype.kind == "i" and (fl["nfev"] > 0).all()
    with xr.open_dataset(res / "sgd.nc") as sgd, xr.open_dataset(res / "comparison.nc") as cmp_:
        assert sgd["diverged"].dtype == bool and cmp_["sgd_diverged"].dtype == bool
        assert cmp_["theorem2_applicable"].dtype == bool
        assert cmp_["feature_rank_flow"].dtype.kind == "i" and sgd["step"].dtype.kind == "i"


def test_open_regime_puts_sgd_and_the_flow_on_one_tau_axis(tiny_run):
    import simbias

    res = tiny_run / "results" / "tiny_a"
    ds = simbias.open_regime(res)
    sgd, fl = xr.open_dataset(res / "sgd.nc"), xr.open_dataset(res / "flow.nc")
    n_s, n_f = sgd.sizes["record"], fl.sizes["record"]
    assert ds.sizes["record"] == n_s + n_f
    assert list(ds["stage"].values) == ["sgd"] * n_s + ["flow"] * n_f
    np.testing.assert_array_equal(ds["tau"].values, np.concatenate([sgd["tau"].values, fl["tau"].values]))
    assert (np.diff(ds["tau"].values) >= 0).all()  # one clock: the flow continues SGD's
    np.testing.assert_array_equal(ds["sharpness"].isel(record=slice(n_s, None)), fl["sharpness"])
    np.testing.assert_array_equal(ds["theta"].isel(record=slice(0, n_s)), sgd["theta"])
    assert np.isnan(ds["grad_norm"].isel(record=slice(0, n_s))).all()
    assert (ds["step"].values[n_s:] == -1).all()
    cmp_ = xr.open_dataset(res / "comparison.nc")
    np.testing.assert_array_equal(ds["z_dist_flow_end"], cmp_["z_dist_flow_end"])
    np.testing.assert_array_equal(ds["feature_rank"].values[:, n_s:], cmp_["feature_rank_flow"].values)
    np.testing.assert_array_equal(ds["sharpness_end"], fl["sharpness_end"])
    assert {"x", "y", "w", "theta0"} <= set(ds.data_vars) and ds.attrs["regime"] == "tiny_a"
    assert ds.attrs["mu"] == cmp_.attrs["mu"] and ds.attrs["tau_start"] == fl.attrs["tau_start"]


def test_default_target_remakes_a_deleted_netcdf(tiny_run, tmp_path):
    """Every NetCDF file is in the default target: deleting one reruns its job (and only those after)."""
    work = tmp_path / "rm"
    shutil.copytree(tiny_run, work, symlinks=True)
    (work / "results" / "tiny_a" / "sgd.nc").unlink()
    proc = smk(work, "-n")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Nothing to be done" not in out, out
    assert re.search(r"rule run_sgd:\n(.*\n)*?\s+output: results/tiny_a/sgd.nc", out), out
    assert "regime=tiny_b" not in out


def test_the_end_of_run_failures_name_only_this_runs_regimes(tiny_run, tmp_path):
    """Snakemake's closing 'regime … failed' lines come from this run's summaries and regimes,
    not from a summary_*.csv an earlier run (another regimes file) left in results/."""
    work = tmp_path / "w"
    shutil.copytree(tiny_run, work, symlinks=True)
    left = "regime,failed\ngone,every replica (2) diverged during SGD\ntiny_a,an old failure\n"
    (work / "results" / "summary_old_regimes.csv").write_text(left)
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["regimes"]["tiny_fail"] = {**cfg["regimes"]["tiny_a"], "eta": 5.0}  # every replica diverges
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = smk(work, "results/summary.csv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    failed = re.findall(r"^regime '(\w+)' failed: (.*)$", proc.stderr, flags=re.M)
    assert [r for r, _ in failed] == ["tiny_fail"], failed
    assert "results/summary.csv" in failed[0][1]
