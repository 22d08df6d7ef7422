"""SLURM for real: the tiny config through `snakemake --executor slurm` on a live cluster.

Skipped unless SIMBIAS_SLURM=1 and `sinfo` answers (CI brings up a one-node cluster with
ci/slurm-up.sh first). Uses profiles/slurm with two changes for a GPU-less node
without slurmdbd: run_sgd asks for no GPU, and job states come from squeue (MinJobAge in
slurm.conf must be at least 3 x the init seconds, or the plugin falls back to sacct).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = Path(__file__).parent / "data" / "tiny.yaml"
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
RULES = ("make_data", "run_sgd", "run_flow", "compare", "summary", "figures")
INIT_SECONDS = 5


def _sinfo_works() -> bool:
    if shutil.which("sinfo") is None:
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    return proc.returncode == 0 and bool(proc.stdout.strip())


def test_slurm_profile_sets_resources_for_every_rule():
    prof = yaml.safe_load(PROFILE.read_text())
    assert prof["executor"] == "slurm"
    assert {"runtime", "mem_mb"} <= set(prof["default-resources"])
    for rule in RULES:
        res = prof["set-resources"][rule]
        assert res["runtime"] > 0 and res["mem_mb"] > 0, rule
    # run_sgd asks for its GPU itself (workflow/rules/common.smk: sgd_gpus, 1 only where CuPy
    # is installed); the profile must not force one on any rule
    assert not any("gpu" in prof["set-resources"][r] for r in RULES)
    assert "gpu=sgd_gpus" in (REPO / "workflow" / "rules" / "sgd.smk").read_text()
    assert "slurm_account" not in str(prof)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("SIMBIAS_SLURM") != "1", reason="set SIMBIAS_SLURM=1 (and run ci/slurm-up.sh)"
)
def test_tiny_config_runs_to_completion_through_slurm(tmp_path):
    if not _sinfo_works():
        pytest.skip("sinfo does not answer: no SLURM cluster here (ci/slurm-up.sh brings one up)")
    pytest.importorskip("snakemake_executor_plugin_slurm")

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(TINY, work / "config.yaml")
    # the project's profile, but run_sgd asks for no GPU (this node has none)
    prof = yaml.safe_load(PROFILE.read_text())
    prof["set-resources"]["run_sgd"]["gpu"] = 0
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "config.yaml").write_text(yaml.safe_dump(prof))

    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(work),
        "--workflow-profile",
        str(profile),
        "--executor",
        "slurm",
        "--jobs",
        "4",
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        str(INIT_SECONDS),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work, timeout=1200)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    assert "Falling back to 'sacct'" not in log, "MinJobAge too small: the plugin switched to sacct"

    # every job but the local `all` went through sbatch
    submitted = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: [^)]*rule_(\w+?)/", log))
    per_rule = {rule: [j for j, r in submitted.items() if r == rule] for rule in RULES}
    assert {r: len(v) for r, v in per_rule.items()} == {
        "make_data": 2,
        "run_sgd": 2,
        "run_flow": 2,
        "compare": 2,
        "summary": 1,
        "figures": 2,  # one job per regime draws its 4 figure kinds
    }, submitted

    # the profile's per-rule resources reached SLURM (finished jobs stay visible for MinJobAge)
    def job(jobid: str) -> str:
        return subprocess.run(["scontrol", "show", "job", jobid], capture_output=True, text=True).stdout

    flow = job(per_rule["run_flow"][0])
    if flow:  # not purged yet
        want = prof["set-resources"]["run_flow"]
        assert f"MinMemoryNode={want['mem_mb']}M" in flow, flow
        h, m = divmod(want["runtime"], 60)
        assert f"TimeLimit={h:02d}:{m:02d}:00" in flow, flow
        assert "JobState=COMPLETED" in flow, flow

    # the outputs
    res = work / "results"
    for regime in ("tiny_a", "tiny_b"):
        for fname in ("data.nc", "sgd.nc", "flow.nc", "comparison.nc", "comparison.csv"):
            assert (res / regime / fname).stat().st_size > 0, (regime, fname)
        for kind in ("singular_values", "trajectory", "neuron_pca", "structure"):
            for ext in ("png", "pdf"):
                assert (res / "figures" / f"{regime}_{kind}.{ext}").stat().st_size > 1000
    summary = (res / "summary.csv").read_text()
    assert summary.splitlines()[0].startswith("regime,") and len(summary.splitlines()) == 3
    import xarray as xr

    with xr.open_dataset(res / "tiny_a" / "comparison.nc") as cmp_:
        assert float(cmp_["z_dist_flow_end"].max()) <= 1e-6  # the flow reached the Theorem 2 point
