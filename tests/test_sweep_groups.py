"""Grouped sweep execution: grid points run as one SGD call write what their own runs write."""

import numpy as np
import pytest

from simbias.config import validate_config
from simbias.stages import sgd as sgd_stage
from simbias.stages.common import check_same_data
from simbias.stages.data import make_data
from simbias.stages.flow import run_flow_group, run_flow_stage
from simbias.stages.sgd import run_sgd, run_sgd_group

GRID = {"eta": [0.02, 0.3], "sigma": [0.0, 0.1, 0.4]}


def _points(tmp_path, **extra):
    cfg = validate_config(
        {
            "results": "results",
            "regimes": {
                "s": {
                    "m": 4,
                    "d": 3,
                    "n": 2,
                    "eta": 0.05,
                    "sigma": 0.1,
                    "replicas": 3,
                    "sgd": {"steps": 400, "loss_bound": 50.0},
                    "sweep": GRID,
                    **extra,
                }
            },
        }
    )
    regs = cfg["regimes"]
    data = []
    for name, reg in regs.items():
        path = tmp_path / name / "data.nc"
        path.parent.mkdir(parents=True)
        make_data(name, reg, str(path))
        data.append(str(path))
    return list(regs), regs, data


def _same_data_vars(a: str, b: str) -> None:
    from simbias import storage

    da, db = storage.open_dataset(a), storage.open_dataset(b)
    assert sorted(da.data_vars) == sorted(db.data_vars)
    for v in da.data_vars:
        x, y = da[v].values, db[v].values
        assert x.dtype == y.dtype and x.shape == y.shape, v
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), v  # bit for bit (NaN where NaN)
    for c in da.coords:
        assert np.array_equal(da[c].values, db[c].values), c


@pytest.mark.parametrize("extra", [{}, {"record_dtype": "float32"}])
def test_grouped_sgd_is_bitwise_the_per_point_runs(tmp_path, extra):
    names, cfgs, data = _points(tmp_path, **extra)
    alone = [str(tmp_path / n / "alone.nc") for n in names]
    for n, d, out in zip(names, data, alone, strict=True):
        run_sgd(n, cfgs[n], d, out)
    grouped = [str(tmp_path / n / "sgd.nc") for n in names]
    run_sgd_group(names, cfgs, data, grouped, checkpoint_path=str(tmp_path / "ckpt"))
    for a, b in zip(alone, grouped, strict=True):
        _same_data_vars(a, b)
    # the grid is not trivial: η = 0.3 with σ = 0.4 loses replicas, σ = 0 draws no noise
    from simbias import storage

    div = [bool(storage.open_dataset(p)["diverged"].values.any()) for p in alone]
    assert any(div) and not all(div)


def test_grouped_flow_is_bitwise_the_per_point_runs(tmp_path, monkeypatch):
    """The grid points' flows in one pool (replicas laid end to end) write each point's own flow.nc,
    diverged points (no flow) included; with a checkpoint folder per point, removed at the end."""
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # two worker processes, as the rule gives
    names, cfgs, data = _points(tmp_path, flow={"records": 12})
    sgd = [str(tmp_path / n / "sgd.nc") for n in names]
    run_sgd_group(names, cfgs, data, sgd)
    alone = [str(tmp_path / n / "alone_flow.nc") for n in names]
    for n, d, g, out in zip(names, data, sgd, alone, strict=True):
        run_flow_stage(n, cfgs[n], d, g, out)
    grouped = [str(tmp_path / n / "flow.nc") for n in names]
    run_flow_group(names, cfgs, data, sgd, grouped, checkpoint_dir=str(tmp_path / "ckpt"))
    for a, b in zip(alone, grouped, strict=True):
        _same_data_vars(a, b)
    assert not any((tmp_path / "ckpt").rglob("*.npz"))


def test_grouped_sgd_with_the_wrong_noise_ids_differs(tmp_path, monkeypatch):
    """The test above can fail: with ids 0..P·R−1 (each point a fresh noise stream) the
    grouped records no longer match the per-point runs."""
    names, cfgs, data = _points(tmp_path)
    n, d = names[1], data[1]  # a noisy point that is not the first
    run_sgd(n, cfgs[n], d, str(tmp_path / "alone.nc"))
    monkeypatch.setattr(sgd_stage, "point_replica_ids", lambda P, R: np.arange(P * R, dtype=np.int64))
    outs = [str(tmp_path / m / "sgd.nc") for m in names]
    run_sgd_group(names, cfgs, data, outs)
    with pytest.raises(AssertionError):
        _same_data_vars(str(tmp_path / "alone.nc"), outs[1])


def test_points_run_as_one_must_hold_the_same_data():
    """The SGD and flow group jobs refuse to fuse points whose data.nc differ (X, y or w)."""
    X, y, w = np.ones((2, 3)), np.zeros(2), np.ones(4)
    check_same_data(["a", "b"], [(X, y, w), (X.copy(), y.copy(), w.copy())])
    with pytest.raises(RuntimeError, match="b: data.nc differs from a's"):
        check_same_data(["a", "b"], [(X, y, w), (X, y + 1e-12, w)])
    with pytest.raises(RuntimeError, match="c: data.nc differs"):
        check_same_data(["a", "b", "c"], [(X, y, w), (X, y, w), (X, y, 2 * w)])


def test_a_killed_grouped_sgd_resumes_from_its_checkpoint_bit_for_bit(tmp_path, monkeypatch, caplog):
    """A chunk's fused SGD call stopped after its 2nd checkpoint (step 200 of 400) writes nothing;
    rerun, it resumes there and writes every point's sgd.nc bit for bit as an uninterrupted run."""
    import logging
    from pathlib import Path

    from test_reliability import Interrupt, interrupted_after

    names, cfgs, data = _points(tmp_path)
    ref = [str(tmp_path / n / "ref.nc") for n in names]
    run_sgd_group(names, cfgs, data, ref)
    outs = [str(tmp_path / n / "sgd.nc") for n in names]
    ckpt = tmp_path / "ckpt"
    kw = dict(checkpoint_path=str(ckpt), checkpoint_every_steps=100)
    real = sgd_stage._sgd_checkpoint
    monkeypatch.setattr(sgd_stage, "_sgd_checkpoint", lambda *a: interrupted_after(real(*a), 2))
    with pytest.raises(Interrupt):
        run_sgd_group(names, cfgs, data, outs, **kw)
    assert len(list(ckpt.glob("fused_*.npz"))) == 1 and not any(Path(o).exists() for o in outs)
    monkeypatch.setattr(sgd_stage, "_sgd_checkpoint", real)
    with caplog.at_level(logging.INFO, logger="simbias"):
        run_sgd_group(names, cfgs, data, outs, **kw)
    assert f"{len(names)} points x 3) in one call" in caplog.text and "(resumed at step 200)" in caplog.text
    for a, b in zip(ref, outs, strict=True):
        _same_data_vars(a, b)
    assert not list(ckpt.glob("fused_*.npz"))  # cleared once every point is written
