"""SGD's stationary spread around M (the brute-force tolerance) and the brute-force stage."""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import problem_on_manifold

from simbias import flow, sgd, storage, theory
from simbias.checkpoint import SGDCheckpoint
from simbias.config import load_schema, validate_config
from simbias.config_job import job_config
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


class Stop(Exception):
    """Stands for a kill right after a checkpoint was saved."""


def test_a_stopped_brute_force_run_resumes_bit_for_bit(tmp_path, monkeypatch, caplog):
    """run_brute_force saves checkpoints like run_sgd: stopped after its second checkpoint and
    rerun, it resumes there and writes the same brute_force.nc (every variable, every bit) as an
    uninterrupted run; the checkpoint is gone afterwards. A resume whose θ is one ulp off is
    told apart, so the comparison is strict enough to see a wrong resume."""
    raw = {
        "m": 4,
        "d": 3,
        "n": 2,
        "eta": 0.05,
        "sigma": 0.2,
        "replicas": 3,
        "sgd": {"steps": 500, "log_points": 5, "linear_points": 2},
        "brute_force": {"steps": 6000, "log_points": 12, "linear_points": 5},
    }
    caplog.set_level(logging.INFO, logger="simbias")
    cfg = job_config(validate_config({"regimes": {"b": raw}})["regimes"]["b"])
    p = {k: str(tmp_path / f"{k}.nc") for k in ("data", "sgd", "ref", "brute", "ulp")}
    make_data("b", cfg, p["data"])
    run_sgd("b", cfg, p["data"], p["sgd"])
    run_brute_force("b", cfg, p["data"], p["sgd"], p["ref"])  # uninterrupted, no checkpoint
    ckpt = tmp_path / ".checkpoints" / "b" / "run_brute_force.npz"

    def run(out: str) -> None:
        run_brute_force("b", cfg, p["data"], p["sgd"], out, str(ckpt), checkpoint_every_steps=1000)

    def interrupted(out: str) -> None:
        save = SGDCheckpoint.save

        def save_then_stop(self, k, arrays):
            save(self, k, arrays)
            if self.saves == 2:
                raise Stop

        with monkeypatch.context() as m:
            m.setattr(SGDCheckpoint, "save", save_then_stop)
            with pytest.raises(Stop):
                run(out)
        assert ckpt.exists() and not Path(out).exists()

    interrupted(p["brute"])
    run(p["brute"])
    assert "resuming from checkpoint" in caplog.text and "(resumed at step 2000)" in caplog.text
    assert not ckpt.exists() and not ckpt.parent.exists()
    ref, got = storage.open_dataset(p["ref"]), storage.open_dataset(p["brute"])
    xr.testing.assert_equal(got, ref)
    assert {k: v for k, v in got.attrs.items() if k not in ("created", "history")} == {
        k: v for k, v in ref.attrs.items() if k not in ("created", "history")
    }

    # the mutant: a resume whose θ is one ulp off
    interrupted(p["ulp"])
    load = SGDCheckpoint.load

    def load_one_ulp_off(self):
        state = load(self)
        th = state.arrays["theta"]
        th[...] = np.nextafter(th, np.inf)  # every entry one ulp up
        return state

    monkeypatch.setattr(SGDCheckpoint, "load", load_one_ulp_off)
    run(p["ulp"])
    with pytest.raises(AssertionError):
        xr.testing.assert_equal(storage.open_dataset(p["ulp"]), ref)
