"""Targets: `snakemake REGIME` builds one regime, a mistyped target gets "did you mean",
--list-target-rules lists described targets only, and regime names may not be rule names."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from simbias import targets
from simbias.config import validate_config
from simbias.config_yaml import ConfigError

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "data" / "tiny.yaml"
POINT = {"m": 4, "d": 3, "n": 2, "eta": 0.05, "sigma": 0.2, "replicas": 2, "sgd": {"steps": 200}}


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)


def jobs(dry_run_stdout: str) -> dict[str, int]:
    """{rule: job count} from the "Job stats" table of a dry run."""
    table = dry_run_stdout.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\S+)\s+(\d+)$", table, re.M)}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """The tiny config with a grouped sweep (its base name has a '-') and a regimes file."""
    work = tmp_path_factory.mktemp("targets")
    cfg = yaml.safe_load(TINY.read_text())
    cfg["regimes"]["sw-a"] = {**POINT, "sweep": {"eta": [0.04, 0.05], "sigma": [0.1, 0.2], "group_size": 3}}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    (work / "mine.yaml").write_text(yaml.safe_dump({"regimes": {"mine": POINT}}))
    return work


def test_a_regime_name_builds_that_regime_only(work):
    proc = snakemake(work, "-n", "tiny_a")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert jobs(proc.stdout) == {
        "make_data": 1,
        "run_sgd": 1,
        "run_flow": 1,
        "compare": 1,
        "figures": 1,
        "comparison_html": 1,
        "tiny_a": 1,
    }
    assert "regime=tiny_b" not in proc.stdout and "summary" not in proc.stdout


def test_a_sweep_a_grid_point_and_a_regimes_file_regime_are_targets(work):
    proc = snakemake(work, "-n", "sw-a", "mine", "--config", "regimes_file=mine.yaml")
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = jobs(proc.stdout)
    assert got["run_sgd_sw-a_group000"] == got["run_sgd_sw-a_group001"] == 1  # 4 points, 3 a job
    assert got["phase_diagram"] == got["sweep_table"] == got["sweep_table_html"] == 1
    assert got["sw-a"] == got["mine"] == 1
    assert got["run_sgd"] == 1 and "regime=tiny_a" not in proc.stdout  # `mine` alone, per point
    point = "sw-a__eta-0p05__sigma-0p2"
    proc = snakemake(work, "-n", point)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert jobs(proc.stdout)[point] == 1 and "phase_diagram" not in proc.stdout


def test_a_mistyped_target_gets_did_you_mean(work):
    proc = snakemake(work, "-n", "tiny_c")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "no target 'tiny_c': did you mean tiny_b or tiny_a? (simbias list shows them all)"
    assert "Traceback" not in proc.stderr and "MissingRuleException" not in proc.stderr
    proc = snakemake(work, "-n", "papr")
    assert proc.returncode == 1 and "did you mean paper?" in proc.stderr
    proc = snakemake(work, "-n", "zzzzzz")
    assert proc.returncode == 1 and "no target 'zzzzzz': it is no target of this config." in proc.stderr
    assert not (work / "logs" / "unknown_target").exists()


def test_list_target_rules_lists_described_targets_only(work):
    proc = snakemake(work, "--list-target-rules")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line and not line.startswith("Using ")]
    listed = dict(re.fullmatch(r"(\S+) \((.+)\)", line).groups() for line in lines)  # each has a description
    cfg = validate_config(yaml.safe_load((work / "config.yaml").read_text()))
    assert set(listed) == set(targets.target_names(cfg["regimes"]))  # no group rule, no pipeline step
    assert listed["tiny_a"] == "regime: m = 4, d = 3, n = 2"
    assert listed["sw-a"].startswith("sweep over eta x sigma: its 4 grid points")
    assert listed["paper"] == targets.FIXED_TARGETS["paper"]


def test_rule_names_are_the_snakefiles_fixed_rules(work):
    """targets.RULE_NAMES (the names a regime may not take) is every rule that is no regime's."""
    proc = snakemake(work, "--list-rules")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rules = {
        line.split(" (")[0] for line in proc.stdout.splitlines() if line and not line.startswith("Using ")
    }
    cfg = validate_config(yaml.safe_load((work / "config.yaml").read_text()))
    regimes = set(cfg["regimes"]) | set(targets.sweeps(cfg["regimes"]))
    groups = {r for r in rules if targets.GROUP_RULE.fullmatch(r)}
    assert len(groups) == 8  # 2 chunks x 4 stages
    assert rules - regimes - groups == targets.RULE_NAMES


@pytest.mark.parametrize("name", ["paper", "all", "extensions", "summary", "run_flow", "unknown_target"])
def test_a_regime_may_not_take_a_rule_name(name):
    with pytest.raises(ConfigError, match=rf"^regime name '{name}' is taken by the pipeline's rule '{name}'"):
        validate_config({"regimes": {name: POINT}})
    sweep = {**POINT, "sweep": {"eta": [0.04, 0.05]}}
    with pytest.raises(ConfigError, match=f"rule '{name}'"):  # a sweep's base name is a target too
        validate_config({"regimes": {name: sweep}})


def test_a_sweep_named_after_the_figures_rule_is_refused():
    """A plain regime 'figures' is refused for its results/ folder; a sweep's base for the rule."""
    with pytest.raises(ConfigError, match="results/figures/ holds the figures"):
        validate_config({"regimes": {"figures": POINT}})
    with pytest.raises(ConfigError, match="taken by the pipeline's rule 'figures'"):
        validate_config({"regimes": {"figures": {**POINT, "sweep": {"eta": [0.04, 0.05]}}}})


def test_a_regime_may_not_take_a_group_rule_name():
    with pytest.raises(ConfigError, match="has the form of a sweep's internal rule names"):
        validate_config({"regimes": {"run_sgd_sw_group000": POINT}})
    validate_config({"regimes": {"papers": POINT, "All": POINT, "run_sgd_sw": POINT}})  # near misses pass


def test_a_clashing_regime_is_refused_before_anything_runs(tmp_path):
    shutil.copy(TINY, tmp_path / "config.yaml")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"regimes": {"paper": POINT}}))
    proc = snakemake(tmp_path, "-n", "--config", "regimes_file=bad.yaml")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("config error: regime name 'paper' is taken")


def test_two_grouped_sweeps_whose_names_differ_in_dash_and_underscore(tmp_path):
    """Their group rules once had the same names (make_data_a_b_group000 for both)."""
    sweep = {**POINT, "sweep": {"eta": [0.04, 0.05]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"regimes": {"a-b": sweep, "a_b": sweep}}))
    proc = snakemake(tmp_path, "--list-rules")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "make_data_a-b_group000" in proc.stdout and "make_data_a_b_group000" in proc.stdout


@pytest.mark.parametrize(
    ("config", "more"),
    [
        (
            {"regimes": {"a": {"m": 1, "sgd": {"steps": 5}}}},
            {"regimes": {"a": {"sgd": {"seed": 2}}, "b": {}}},
        ),
        ({"regimes": None, "x": 5}, {"regimes": {"a": {"m": 2}}, "x": {}}),
        ({"a": [1, 2]}, {"a": {"b": 1}, "c": [3]}),
    ],
)
def test_the_config_merge_is_snakemakes(config, more):
    import copy

    from snakemake.utils import update_config as snakemakes

    from simbias.config_files import update_config

    expected = copy.deepcopy(config)
    snakemakes(expected, copy.deepcopy(more))
    assert update_config(copy.deepcopy(config), copy.deepcopy(more)) == expected
