"""SGD's stationary spread around M (the brute-force tolerance) and the brute-force stage."""

import numpy as np
import pandas as pd
import pytest
from conftest import problem_on_manifold

from simbias import flow, sgd, theory
from simbias.config import load_schema, validate_config
from simbias.stages.brute_force import run_brute_force
from simbias.stages.compare import compare
from simbias.stages.data import make_data
from simbias.stages.flow import run_flow_stage
from simbias.stages.sgd import run_sgd


@pytest.mark.parametrize("eta,sigma", [(0.05, 0.03), (0.05, 0.2)])
def test_stationary_spread_matches_sgd_at_the_theorem2_point(eta, sigma):
    """From the flow's end point, 64 SGD replicas fluctuate around M as derived (docs/theory.md):
    mean loss Σ ησ²λ/(1 − ηλ), sd of each z_ji and of F, each within 10% (about 3 standard
    errors for 64 replicas × 30 nearly independent records)."""
    act, X, y, w, th0 = problem_on_manifold()
    th = flow.run_flow(act, th0, X, y, w, tol=1e-12, tau_max=1e4, records=20).theta_end
    sp = theory.sgd_stationary_spread(act, th, X, w, eta, sigma)
    R, K = 64, 15000
    rec = np.linspace(0, K, 31).astype(int)
    res = sgd.label_noise_sgd(
        np, act, np.repeat(th[None], R, 0), X, y, w, eta=eta, sigma=sigma, steps=K, record_steps=rec, seed=5
    )
    keep = slice(1, None)  # drop the start (on M exactly)
    dz = res.theta[:, keep] @ X.T - th @ X.T
    assert res.loss[:, keep].mean() / sp.loss_mean == pytest.approx(1.0, abs=0.1)
    np.testing.assert_allclose(dz.std(axis=(0, 1)) / sp.z_std, 1.0, atol=0.1)
    assert res.sharpness[:, keep].std() / sp.F_std == pytest.approx(1.0, abs=0.1)


def test_brute_force_stage_agrees_with_the_flow(tmp_path):
    """A small regime: SGD continued to τ = 3 lands within the derived tolerance of the flow."""
    raw = {
        "regimes": {
            "b": {
                "m": 4,
                "d": 3,
                "n": 2,
                "eta": 0.05,
                "sigma": 0.1,
                "replicas": 8,
                "sgd": {"steps": 2000, "log_points": 10, "linear_points": 3},
                "flow": {"records": 30},
                "brute_force": {"steps": 120000, "log_points": 10, "linear_points": 3},
            }
        }
    }
    cfg = validate_config(raw, load_schema())["regimes"]["b"]
    p = {k: str(tmp_path / f"{k}.nc") for k in ("data", "sgd", "flow", "brute", "comparison")}
    make_data("b", cfg, p["data"])
    run_sgd("b", cfg, p["data"], p["sgd"])
    run_flow_stage("b", cfg, p["data"], p["sgd"], p["flow"])
    run_brute_force("b", cfg, p["data"], p["sgd"], p["brute"])
    csv = str(tmp_path / "comparison.csv")
    compare("b", cfg, p["data"], p["sgd"], p["flow"], p["comparison"], csv, brute_path=p["brute"])
    df = pd.read_csv(csv)
    assert df["brute_tau"].iloc[0] == pytest.approx(0.05**2 * 0.1**2 * 122000)
    assert df["brute_within_tol"].mean() >= 0.9
    # the flow is at z* there, SGD a few sd of its spread away; the tolerance is not vacuous
    assert (df["brute_z_dist_flow"] < 1e-3 * df["brute_z_tol"]).all()
    assert (df["brute_z_gap"] > 1e-3 * df["brute_z_tol"]).all()
    # SGD's own loss at the end is of the size of its stationary loss
    ratio = df["brute_loss_sgd"].mean() / df["brute_loss_stationary"].mean()
    assert 0.3 < ratio < 3.0
