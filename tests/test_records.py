"""Records sized to need: ``record_dtype: float32`` stores the trajectories as float32.

The computation is unchanged (float64): the stored records are the float64 run's records rounded
to float32, the files are smaller, and the flow (which starts from the stored last iterate) still
reaches the Theorem 2 point. The default stays float64.
"""

import numpy as np
import xarray as xr
from test_reliability import resolved, run_stages

from simbias import storage


def test_float32_records_are_the_float64_records_rounded(tmp_path):
    cfg = resolved(replicas=4, sgd={"steps": 3000, "log_points": 40, "linear_points": 40})
    p64 = run_stages(tmp_path / "f64", cfg)
    p32 = run_stages(tmp_path / "f32", {**cfg, "record_dtype": "float32"})
    assert cfg["record_dtype"] == "float64"  # the default
    for stage in ("sgd", "flow"):
        with xr.open_dataset(p64[stage]) as a, xr.open_dataset(p32[stage]) as b:
            assert a.attrs["record_dtype"] == "float64" and b.attrs["record_dtype"] == "float32"
            for name, var in a.data_vars.items():
                want = np.float32 if "record" in var.dims and var.dtype.kind == "f" else var.dtype
                assert b[name].dtype == want, (stage, name)
            assert b["tau"].dtype == np.float64  # coordinates keep full precision
            if stage == "sgd":  # the same SGD run, stored rounded
                np.testing.assert_array_equal(b["theta"].values, a["theta"].values.astype(np.float32))
                np.testing.assert_array_equal(b["loss"].values, a["loss"].values.astype(np.float32))
            else:  # the flow starts from the rounded last iterate: its end state is kept in float64
                assert b["theta_end"].dtype == np.float64
    # the stages read float32 records back as float64
    assert storage.open_dataset(p32["sgd"])["theta"].dtype == np.float64
    c64, c32 = (storage.open_dataset(p["comparison"]) for p in (p64, p32))
    assert (c64["z_dist_flow_end"] <= 1e-6).all() and (c32["z_dist_flow_end"] <= 1e-6).all()
    np.testing.assert_array_equal(c64["feature_rank_flow_end"], c32["feature_rank_flow_end"])
    np.testing.assert_allclose(c32["sharpness_flow_end"], c64["sharpness_flow_end"], rtol=1e-9)


def test_float32_records_halve_the_trajectories(tmp_path):
    """At a size where the trajectories outweigh the file's metadata: (m, d, n) = (20, 10, 5)."""
    from simbias.stages.data import make_data
    from simbias.stages.sgd import run_sgd

    cfg = resolved(m=20, d=10, n=5, replicas=8, sgd={"steps": 2000, "log_points": 60, "linear_points": 20})
    make_data("r", cfg, tmp_path / "data.nc")
    sizes = {}
    for dtype in ("float64", "float32"):
        out = tmp_path / f"sgd_{dtype}.nc"
        run_sgd("r", {**cfg, "record_dtype": dtype}, tmp_path / "data.nc", out)
        sizes[dtype] = out.stat().st_size
    assert sizes["float32"] < 0.6 * sizes["float64"], sizes


def test_dataset_from_frame_is_from_dataframe(tmp_path):
    """storage.dataset_from_frame (comparison.nc's table, columns added at once) is
    xr.Dataset.from_dataframe: the same variables in the same order, types, values and file."""
    import pandas as pd

    df = pd.DataFrame(
        {
            "replica": np.arange(5),
            "status": ["converged", "stalled", "converged", "x", ""],
            "gap": [0.5, np.nan, -1e-300, 2.0, 3.0],
            "rank": np.array([3, 2, 1, 3, 3]),
            "ok": pd.array([True, False, None, True, True], dtype="boolean").astype("Float64").astype(float),
            "flag": np.array([True, False, True, True, False]),
        }
    ).set_index("replica")
    want, got = xr.Dataset.from_dataframe(df), storage.dataset_from_frame(df)
    xr.testing.assert_identical(got, want)
    assert list(got.variables) == list(want.variables)
    assert all(got[k].dtype == want[k].dtype for k in want.variables)
    storage.write_netcdf(want, tmp_path / "a.nc")
    storage.write_netcdf(got, tmp_path / "b.nc")
    a, b = (xr.open_dataset(tmp_path / f, engine="netcdf4") for f in ("a.nc", "b.nc"))
    assert list(a.variables) == list(b.variables)
    xr.testing.assert_identical(a, b)
