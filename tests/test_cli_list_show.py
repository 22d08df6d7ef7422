"""`simbias list` and `simbias show NAME`: the config's targets and regimes, one regime opened."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml
from test_outputs_doc import tiny_workdir

from simbias import cli


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_workdir(tmp_path_factory)


def run(cwd, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simbias", *args], capture_output=True, text=True, cwd=cwd)


def test_help_lists_every_subcommand():
    proc = subprocess.run([sys.executable, "-m", "simbias", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for command in ("list", "show", "summary"):
        assert f"\n    {command} " in proc.stdout


def test_list_names_the_targets_and_regimes_and_what_is_made(tiny, tmp_path):
    shutil.copytree(tiny / "results", tmp_path / "results")
    cfg = yaml.safe_load((tiny / "config.yaml").read_text())
    cfg["regimes"]["sw"] = {**cfg["regimes"]["tiny_a"], "sweep": {"eta": [0.04, 0.05]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "more.yaml").write_text(yaml.safe_dump({"regimes": {"extra": cfg["regimes"]["tiny_b"]}}))
    (tmp_path / "results" / "figures" / "tiny_b_structure.png").unlink()
    proc = run(tmp_path, "list", "--regimes-file", "more.yaml")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.split()[:1] == ["paper"] for line in lines)
    assert any(line.split()[:1] == ["readme_figure"] for line in lines)
    row = {line.split()[0]: line.split() for line in lines if line.startswith("  ") and line.split()}
    assert row["tiny_a"] == ["tiny_a", "default", "4", "3", "2", "3", "all", "made"]
    assert row["tiny_b"][-4:] == ["13", "of", "14", "made"]
    assert row["extra"][-2:] == ["not", "run"]  # from the regimes file
    assert "2 grid points over eta" in " ".join(row["sw"]) and "sw__eta-0p04" not in proc.stdout


def test_show_opens_a_regime(tiny, monkeypatch, capsys):
    monkeypatch.chdir(tiny)
    assert cli.main(["show", "tiny_a"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tiny_a: regime: m = 4, d = 3, n = 2\n")
    assert "\n  sgd:\n" in out and "    steps: 300\n" in out and "  eta: 0.05\n" in out  # resolved config
    assert "  theory: {epsilon: 1.0e-06, z_tol: 1.0e-06}" in out  # defaults filled in
    for name in ("data.nc", "sgd.nc", "flow.nc", "comparison.nc"):
        assert any(
            f"results/tiny_a/{name} " in line and line.endswith("made with this config")
            for line in out.splitlines()
        )
    assert "results/figures/tiny_a_trajectory.png" in out and "missing" not in out
    # the key numbers, as simbias summary prints them
    assert "reached the Theorem 2 point (max|z − z*| ≤ 1e-06): 3 of 3 replicas" in out
    assert "bound held for 3 of 3" in out and "provenance" not in out


def test_show_says_which_files_an_edit_of_the_config_makes_stale(tiny, tmp_path, monkeypatch, capsys):
    shutil.copytree(tiny / "results", tmp_path / "results")
    cfg = yaml.safe_load((tiny / "config.yaml").read_text())
    cfg["regimes"]["tiny_a"]["sigma"] = 0.3  # SGD onwards changes, the data does not
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "results" / "tiny_a" / "comparison.nc").unlink()
    monkeypatch.chdir(tmp_path)
    assert cli.main(["show", "tiny_a"]) == 0
    lines = {
        line.split()[0]: line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("  results/")
    }
    assert lines["results/tiny_a/data.nc"].endswith("made with this config")
    assert lines["results/tiny_a/sgd.nc"].endswith(
        "made with another config (sigma differ): snakemake remakes it"
    )
    assert lines["results/tiny_a/comparison.nc"].endswith("missing")


def test_show_of_a_sweep_lists_its_points(tiny, tmp_path, monkeypatch, capsys):
    cfg = yaml.safe_load((tiny / "config.yaml").read_text())
    cfg["regimes"]["sw"] = {**cfg["regimes"]["tiny_a"], "sweep": {"sigma": [0.1, 0.2]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["show", "sw"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sw: sweep over sigma: its 2 grid points")
    assert "  sw__sigma-0p1  not run" in out and "  sw__sigma-0p2  not run" in out
    assert cli.main(["show", "sw__sigma-0p2"]) == 0
    assert capsys.readouterr().out.startswith("sw__sigma-0p2: grid point sigma = 0.2 of sweep sw\n")


def test_show_of_an_unknown_name_suggests_the_closest(tiny):
    proc = run(tiny, "show", "tiny_c")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (
        "simbias show: no regime or sweep 'tiny_c': did you mean tiny_b or tiny_a? (simbias list shows them all)\n"
    )
    proc = run(tiny, "show", "paper")
    assert proc.returncode == 2 and "'paper' is a target, not a regime" in proc.stderr


def test_list_refuses_a_bad_config_in_one_line(tmp_path):
    (tmp_path / "config.yaml").write_text("regimes:\n  a: {m: 4, d: 3, n: 2, eta: -1}\n")
    proc = run(tmp_path, "list")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("simbias list: config error: regime 'a'") and proc.stderr.count("\n") == 1
