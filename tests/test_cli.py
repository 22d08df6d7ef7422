"""`python -m simbias summary`: a readable summary of a regime's outputs."""

from __future__ import annotations

import subprocess
import sys

import pytest
from test_outputs_doc import tiny_workdir

from simbias import cli


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_workdir(tmp_path_factory)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simbias", *args], capture_output=True, text=True)


def test_summary_of_a_regime(tiny):
    proc = run("summary", str(tiny / "results" / "tiny_a"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # sizes
    assert "regime tiny_a" in out
    assert "m = 4 neurons, d = 3 input dimensions, n = 2 training points, 3 replicas" in out
    assert "SGD:  300 steps" in out and "sgd.nc" in out and "kB" in out
    # final ranks: n = 2 <= d = 3, so the flow ends at rank one
    assert "end of flow: 1 (3 replicas)" in out
    # the theory comparison
    assert "Theorem 2 (unique stationary point, rank one): applies" in out
    assert "reached the Theorem 2 point (max|z − z*| ≤ 1e-06): 3 of 3 replicas" in out
    assert "bound held for 3 of 3" in out
    # provenance
    assert "simbias 0.1.0, CF-1." in out and "config sha256" in out and "history:" in out
    assert "WARNING" not in out


def test_summary_says_when_the_theory_does_not_apply(tiny):
    proc = run("summary", str(tiny / "results" / "tiny_b"))
    assert proc.returncode == 0, proc.stderr
    assert "does not apply (n = 3 > d = 2" in proc.stdout
    assert "F* =" not in proc.stdout


def test_summary_of_the_results_folder_covers_every_regime(tiny, capsys):
    assert cli.main(["summary", str(tiny / "results")]) == 0
    out = capsys.readouterr().out
    assert "regime tiny_a" in out and "regime tiny_b" in out


def test_summary_of_a_folder_without_outputs_fails_clearly(tmp_path):
    proc = run("summary", str(tmp_path))
    assert proc.returncode == 2
    assert "no pipeline outputs" in proc.stderr and str(tmp_path) in proc.stderr


def test_summary_flags_files_from_different_configs(tiny, tmp_path):
    import shutil

    import xarray as xr

    folder = tmp_path / "tiny_a"
    shutil.copytree(tiny / "results" / "tiny_a", folder)
    with xr.open_dataset(folder / "flow.nc") as ds:
        ds = ds.load()
    ds.attrs["config_sha256"] = "0" * 64
    ds.to_netcdf(folder / "flow.nc")
    assert "WARNING: sgd/flow/comparison come from different configs" in cli.summarize_regime(folder)


def test_version_and_help():
    assert run("--version").stdout.startswith("simbias ")
    proc = run()
    assert proc.returncode == 2 and "summary" in proc.stderr


def test_summary_of_a_corrupt_file_names_it_in_one_line(tiny, tmp_path):
    """A truncated flow.nc: one line naming the file and what to do, no traceback, exit 1."""
    import shutil

    folder = tmp_path / "tiny_a"
    shutil.copytree(tiny / "results" / "tiny_a", folder)
    flow = folder / "flow.nc"
    flow.write_bytes(flow.read_bytes()[:3000])
    proc = run("summary", str(folder))
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert (
        proc.stderr.startswith(f"simbias summary: {flow} cannot be read")
        and "corrupt or truncated" in proc.stderr
    )
