"""Theorem 3 (eqs. 16, 17) and Lemma 6 with constant second-layer weights w_j = c, on fig1a's data.

The paper proves them for w_j = 1. With w_j = c they hold after the exact rescaling
F = c²F₁ (docs/theory.md): no bound may be reported violated for c = 0.25 or 0.05, and
the unrescaled bounds must fail there (so the check can tell the two apart).
"""

from pathlib import Path

import numpy as np
import pytest

from simbias import flow, theory
from simbias.activations import OddPower
from simbias.config import load_schema, validate_config
from simbias.config_yaml import read_config_yaml
from simbias.data import make_inputs, make_labels
from simbias.stages.compare import _bound_holds, _time_below_for_good

EPS = 1e-6


def fig1a_problem():
    cfg = validate_config(
        read_config_yaml(Path(__file__).resolve().parents[1] / "config.yaml"), load_schema()
    )["regimes"]["fig1a"]
    m, n, d = cfg["m"], cfg["n"], cfg["d"]
    return OddPower(1, 0.1), make_inputs(n, d, cfg["data"]), make_labels(n, cfg["labels"]), m


@pytest.mark.parametrize("cw", [0.25, 0.05])
def test_constant_weight_bounds_hold_rescaled_and_fail_unrescaled(cw):
    act, X, y, m = fig1a_problem()
    w = np.full(m, cw)
    assert theory.bounds_applicability(X, act, w).ok
    s2 = theory.weight_scale(w)
    c = theory.constants(act, X)
    zs = theory.target_z(act, y, w)
    th0 = np.random.default_rng(3).normal(0, 0.1, (m, X.shape[1])) / cw ** (1 / 3)
    res = flow.run_flow(act, th0, X, y, w, tol=1e-10, tau_max=1e6 / s2, records=80, eps=EPS, z_star=zs)
    assert res.status == "converged"
    ok = np.isfinite(res.loss)
    zrec = np.max(np.abs(res.theta @ X.T - zs), axis=(1, 2))
    # Lemma 6, rescaled: max|z − z*| ≤ ‖∇_M F‖/(c²√μϱ1ϱ2) at every record
    assert np.all(zrec[ok] <= theory.lemma6_bound(res.grad_norm[ok], c, s2) * (1 + 1e-9))
    # eq. (16): gradient time; eq. (17) = (C.1): distance time (record bracket)
    F0 = res.sharpness[0]
    assert res.tau_eps <= theory.grad_eps_time(F0, c, EPS, s2)
    z_end = np.max(np.abs(res.theta_end @ X.T - zs))[None]
    lo, hi = _time_below_for_good(zrec[None], res.tau, z_end, EPS)
    assert np.isfinite(hi[0]) and lo[0] < hi[0]
    assert _bound_holds(lo, hi, [theory.theorem3_time(F0, c, EPS, s2)], [res.tau_end]) == [True]
    # without the rescaling Lemma 6 is violated (the check is not vacuous)
    assert np.any(zrec[ok] > theory.lemma6_bound(res.grad_norm[ok], c))


def test_bound_holds_three_way():
    """True / False / undecided (NA) from a record bracket (after, at] against a bound."""
    import pandas as pd

    got = _bound_holds(
        np.array([1.0, 5.0, 2.0, np.nan, np.nan, 1.0]),
        np.array([2.0, 6.0, 4.0, np.nan, np.nan, np.nan]),
        np.array([3.0, 3.0, 3.0, 3.0, 3.0, np.nan]),
        np.array([9.0, 9.0, 9.0, 9.0, 1.0, 9.0]),
    )
    assert got[:2] == [True, False] and got[2] is pd.NA and got[3] is False
    assert got[4] is pd.NA and got[5] is pd.NA


def test_time_below_for_good_bracket():
    tau = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    v = np.array([[5.0, 0.5, 2.0, 0.5, np.nan], [0.1, 0.1, 0.1, 0.1, 0.1], [5, 5, 5, 5, 5]])
    lo, hi = _time_below_for_good(v, tau, np.array([0.5, 0.1, 5.0]), 1.0)
    np.testing.assert_array_equal(lo[:2], [2.0, 0.0])
    np.testing.assert_array_equal(hi[:2], [3.0, 0.0])
    assert np.isnan(lo[2]) and np.isnan(hi[2])
