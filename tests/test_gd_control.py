"""GD as a control: no flow after it, and it ends at the rank it arrived on M with."""

import numpy as np
import pandas as pd
import xarray as xr

from simbias.config import load_schema, validate_config
from simbias.stages.compare import compare
from simbias.stages.data import make_data
from simbias.stages.flow import run_flow_stage
from simbias.stages.sgd import run_sgd
from simbias.stages.summary import summarize


def test_gd_has_no_flow_and_keeps_its_arrival_rank(tmp_path):
    raw = {
        "regimes": {
            "gd": {
                "m": 6,
                "d": 3,
                "n": 3,
                "eta": 0.05,
                "sigma": 0,
                "replicas": 3,
                "algorithm": {"name": "gd"},
                "sgd": {"steps": 4000, "log_points": 20, "linear_points": 5},
                "flow": {"records": 10},
            }
        }
    }
    cfg = validate_config(raw, load_schema())["regimes"]["gd"]
    p = {k: str(tmp_path / f"{k}.nc") for k in ("data", "sgd", "flow", "comparison")}
    make_data("gd", cfg, p["data"])
    run_sgd("gd", cfg, p["data"], p["sgd"])
    run_flow_stage("gd", cfg, p["data"], p["sgd"], p["flow"])
    csv = str(tmp_path / "comparison.csv")
    compare("gd", cfg, p["data"], p["sgd"], p["flow"], p["comparison"], csv)
    fl = xr.open_dataset(p["flow"])
    sgd = xr.open_dataset(p["sgd"])
    assert "no drift along M without noise" in fl.attrs["flow"]
    assert set(fl["status"].values) == {"not_applicable"}
    # the "flow" is GD's last iterate, untouched
    np.testing.assert_array_equal(fl["theta_end"].values, sgd["theta"].values[:, -1])
    df = pd.read_csv(csv)
    assert (df["step_arrival_on_M"] > 0).all()  # GD reached M (loss ≤ 1e-12 for good)
    assert (df["feature_rank_flow_end"] == df["feature_rank_arrival_on_M"]).all()
    assert (df["feature_rank_arrival_on_M"] > 1).all()  # the control does not collapse
    assert df["tau_eps_theorem3_bound"].isna().all() and df["theorem3_bound_holds"].isna().all()
    assert df["flag"].str.startswith("no flow (GD)").all()
    summarize([csv], str(tmp_path / "summary.csv"))
    s = pd.read_csv(tmp_path / "summary.csv").iloc[0]
    assert s["feature_rank_flow_end_median"] == s["feature_rank_arrival_on_M_median"] > 1
    assert s["flow_converged"] == 0
