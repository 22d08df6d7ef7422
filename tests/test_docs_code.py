"""The docs say what the code does: the Theorem 3 bounds in docs/math.md, the documented way
to select the flow's records, which summary a regimes file gets."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from test_outputs_doc import tiny_workdir

from simbias import open_regime, theory
from simbias.activations import make_activation
from simbias.config import load_config_file
from simbias.data import make_dataset

REPO = Path(__file__).resolve().parents[1]
MATH = (REPO / "docs" / "math.md").read_text()
OUTPUTS = (REPO / "docs" / "outputs.md").read_text()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_workdir(tmp_path_factory)


def _bullet(text: str, column: str) -> str:
    """The list item of docs/math.md that names `column` first."""
    items = re.split(r"\n(?=- )", text)
    return next(item for item in items if item.startswith("- ") and f"`{column}`" in item)


def test_math_md_gives_the_bound_the_code_computes():
    """tau_eps_theorem3_bound is eq. (16) (log μβ²/ε²); (C.1)'s formula bounds the distance time."""
    grad = _bullet(MATH, "tau_eps_theorem3_bound")
    assert grad.startswith("- eq. (16)") and "log(max(μβ² / ε², 1))" in grad and "(C.1)" not in grad
    dist = _bullet(MATH, "tau_z_eps_theorem3_bound")
    assert dist.startswith("- (C.1)") and "log(max(β² / (ϱ1² ϱ2² ε²), 1))" in dist
    # the fig1a numbers quoted there, from fig1a's data and the code's bounds
    reg = load_config_file(REPO / "config.yaml")["regimes"]["fig1a"]
    data = make_dataset(reg)
    act = make_activation(reg["activation"])
    c = theory.constants(act, data["x"])
    _, f_star, _ = theory.theorem2_target(act, data["x"], data["y"], data["w"])
    eps = reg["theory"]["epsilon"]
    grad_time, dist_time = theory.grad_eps_time(f_star, c, eps), theory.theorem3_time(f_star, c, eps)
    quoted = (
        f"F(θ(0)) = F* = {f_star:.3f} would give {grad_time:.0f} by eq. (16) and {dist_time:.0f} by (C.1)"
    )
    assert quoted in " ".join(dist.split())
    assert f"differ by `log(1 / (μ ϱ1² ϱ2²)) / (ϱ1 ϱ2 μ)`: {dist_time - grad_time:.0f} at fig1a" in " ".join(
        dist.split()
    )
    assert f"grows by {1 / (c.mu * c.beta**2):.0f} per unit of F" in " ".join(dist.split())


def _documented_flow_selection() -> str:
    return re.search(r"`(ds\.[^`]+)` keeps the flow", OUTPUTS)[1]


def test_the_documented_selection_of_the_flow_keeps_every_other_variable(tiny):
    ds = open_regime(tiny / "results" / "tiny_a")
    flow = eval(_documented_flow_selection(), {"ds": ds})  # the snippet as docs/outputs.md gives it
    assert set(flow["stage"].values) == {"flow"}
    assert flow.sizes["record"] == int((ds["stage"] == "flow").sum()) > 0
    for name, var in ds.variables.items():
        if "record" not in var.dims:  # untouched: same dimensions, type and values
            assert flow[name].dims == var.dims and flow[name].dtype == var.dtype, name
            xr.testing.assert_identical(flow[name], ds[name])
        else:
            assert flow[name].dtype == var.dtype, name  # counts stay integers
    assert np.issubdtype(flow["feature_rank"].dtype, np.integer)


def test_a_regimes_file_gets_its_own_summary_as_documented(tmp_path):
    (tmp_path / "config.yaml").write_text((REPO / "tests" / "data" / "tiny.yaml").read_text())
    point = {"m": 4, "d": 3, "n": 2, "eta": 0.05, "sigma": 0.2, "replicas": 2, "sgd": {"steps": 200}}
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({"regimes": {"mine": point}}))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n"]
    proc = subprocess.run([*cmd, "--config", "regimes_file=mine.yaml"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "output: results/summary_mine.csv" in proc.stdout
    block = " ".join(OUTPUTS.split("summary.csv", 1)[1].split("summary*.html", 1)[0].split())
    assert (
        "summary_{file}.csv: the regimes that a regimes file {file}.yaml, --config regimes_file={file}.yaml"
        in block
    )


def test_the_readme_says_what_sets_the_final_singular_value_ratio():
    """σ₂/σ₁ ≈ 1e-10 at the flow's end is the flow's tolerance, not round-off."""
    readme = " ".join((REPO / "README.md").read_text().split())
    assert "fall to round-off" not in readme
    assert "where the flow stops at its tolerance ‖∇_M F‖ ≤ `flow.tol`" in readme
