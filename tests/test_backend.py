"""Backend selection: auto takes CuPy only where cupy.cuda.is_available(), logs its choice;
`backend: cupy` without a usable GPU stops the SGD job before any work, naming regime and field."""

import logging
import sys
import types

import numpy as np
import pytest

from simbias import backend, sgd
from simbias.activations import OddPower
from simbias.stages.sgd import run_sgd


def fake_cupy(monkeypatch, available: bool):
    cp = types.ModuleType("cupy")
    cp.cuda = types.SimpleNamespace(is_available=lambda: available)
    monkeypatch.setitem(sys.modules, "cupy", cp)
    return cp


def test_auto_without_gpu_is_numpy_and_logged(monkeypatch, caplog):
    fake_cupy(monkeypatch, False)
    with caplog.at_level(logging.INFO, logger="simbias.backend"):
        xp, name = backend.get_backend("auto")
    assert xp is np and name == "numpy"
    assert "no usable GPU" in caplog.text and "CPU fast path" in caplog.text


def test_auto_with_gpu_is_cupy(monkeypatch, caplog):
    cp = fake_cupy(monkeypatch, True)
    with caplog.at_level(logging.INFO, logger="simbias.backend"):
        xp, name = backend.get_backend("auto")
    assert xp is cp and name == "cupy" and "using cupy" in caplog.text


def test_cupy_without_gpu_refused(monkeypatch):
    fake_cupy(monkeypatch, False)
    with pytest.raises(RuntimeError, match="no usable GPU"):
        backend.get_backend("cupy")
    monkeypatch.setitem(sys.modules, "cupy", None)  # not installed
    ok, why = backend.cupy_usable()
    assert not ok and "gpu extra" in why


def test_run_sgd_with_cupy_and_no_gpu_stops_before_any_work(monkeypatch, tmp_path):
    fake_cupy(monkeypatch, False)
    out = tmp_path / "sgd.nc"
    with pytest.raises(RuntimeError, match=r"regime 'fig1a', field 'backend'.*auto"):
        # the data file does not even exist: the backend is checked first
        run_sgd("fig1a", {"backend": "cupy", "dtype": "float64"}, str(tmp_path / "missing.nc"), str(out))
    assert not out.exists()


def test_segment_function_selection(monkeypatch):
    act = OddPower(1, 0.1)
    monkeypatch.delenv("SIMBIAS_CPU_KERNEL", raising=False)
    assert sgd.select_advance(np, act, "float64")[1] == "numba"
    cp = types.ModuleType("cupy")
    _, name = sgd.select_advance(cp, act, "float64", shape=(10, 3, 3))
    assert name == "cupy-thread-exact"
    assert sgd.select_advance(cp, act, "float32", shape=(30, 10, 15), gpu_fast=True)[1] == "cupy-block-fast"
