"""Valid configs at the edge of float64 run to the end: each crashed a job mid-run with a
traceback before (issue 27). Values past these edges are refused up front
(tests/test_bad_configs.py); these are the ones kept, and what their outputs say."""

import warnings

import numpy as np
import pandas as pd
import pytest

from simbias import storage
from simbias.config import validate_config
from simbias.stages.compare import compare
from simbias.stages.data import make_data
from simbias.stages.flow import run_flow_stage
from simbias.stages.sgd import run_sgd

BASE = {"m": 3, "d": 2, "n": 2, "eta": 0.05, "sigma": 0.1, "replicas": 2}
BASE["sgd"] = {"steps": 100, "log_points": 8, "linear_points": 3}
BASE["flow"] = {"records": 10}


def run_stages(tmp_path, stages=("data", "sgd", "flow", "compare"), **fields):
    """The regime's stages in order, as the pipeline runs them; the paths of their outputs."""
    cfg = validate_config({"regimes": {"r": {**BASE, **fields}}})["regimes"]["r"]
    p = {k: str(tmp_path / f"{k}.nc") for k in ("data", "sgd", "flow", "comparison")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow in diverging replicas: expected
        make_data("r", cfg, p["data"])
        run_sgd("r", cfg, p["data"], p["sgd"])
        if "flow" in stages:
            run_flow_stage("r", cfg, p["data"], p["sgd"], p["flow"])
        if "compare" in stages:
            compare("r", cfg, p["data"], p["sgd"], p["flow"], p["comparison"], str(tmp_path / "c.csv"))
    return p


def test_one_sam_with_a_huge_radius_diverges_and_is_flagged(tmp_path):
    """ρ = 1e150 (its clock ηρ²k/n still a float64) blows θ up within one step: the record
    after that step has a non-finite θ, whose SVD stopped the job ("SVD did not converge")."""
    p = run_stages(tmp_path, ("sgd",), sigma=0, algorithm={"name": "one_sam", "rho": 1e150})
    sgd = storage.open_dataset(p["sgd"])
    assert sgd["diverged"].values.all()
    assert np.isfinite(sgd["tau"].values).all()


def test_labels_whose_theorem2_point_overflows_are_flagged(tmp_path):
    """Labels up to 1e300: comparison.nc held sharpness_star = inf; now NaN, with the reason."""
    p = run_stages(tmp_path, labels={"low": 1e299, "high": 1e300})
    cmp_ = storage.open_dataset(p["comparison"])
    assert np.isnan(cmp_["sharpness_star"].values).all()
    assert not cmp_["theorem2_applicable"].values.any()
    df = pd.read_csv(tmp_path / "c.csv")
    assert df["not_applicable_reason"].str.contains("overflows float64").all()


def test_a_tiny_theory_epsilon_gives_finite_bounds(tmp_path):
    """theory.epsilon: 1e-300 crashed the comparison (ZeroDivisionError in the bound)."""
    p = run_stages(tmp_path, theory={"epsilon": 1e-300})
    cmp_ = storage.open_dataset(p["comparison"])
    bound = cmp_["tau_eps_theorem3_bound"].values
    assert np.isfinite(bound).all() and (bound > 0).all()


@pytest.mark.parametrize(
    "values", [[1e-100] * 3, [1e100, 1e-100, 1.0, -1.0]], ids=["all_1e-100", "mixed_1e100"]
)
def test_weights_at_the_edge_of_the_allowed_range_run_through(tmp_path, values):
    """Weights 1e-300 (or mixed with 1e300) crashed the flow (brentq did not converge); within
    [1e-100, 1e100] the Theorem 2 point is computed and every stage finishes."""
    p = run_stages(tmp_path, m=len(values), weights={"kind": "list", "values": values})
    cmp_ = storage.open_dataset(p["comparison"])
    assert np.isfinite(cmp_["sharpness_star"].values).all()
