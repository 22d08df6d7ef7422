"""1-SAM: it lowers F, and its clock τ = ηρ²k/n (derived in simbias/sam.py) matches the flow.

Cyclic order makes 1-SAM deterministic, so one replica suffices. At every check time
F must match the flow's F within 5% (the O(η) and O(ρ) corrections of the derivation;
measured ≤ 3.2% here); with the clock off by a factor of 2 either way some check time
must miss by more than 5%, so the test tells a right clock from a wrong one.
"""

import numpy as np
from conftest import problem_on_manifold

from simbias import flow, model, sam

ETA, RHO = 0.01, 0.1


def setup():
    return problem_on_manifold()


def run_sam(act, X, y, w, theta0, steps, order="cyclic", R=1):
    so = sam.SampleOrder(order, 3, R, X.shape[0])
    theta = np.repeat(theta0[None], R, 0)
    alive, ds = np.ones(R, bool), np.full(R, -1)
    out, k = [], 0
    for st in steps:
        theta, alive = sam.advance(np, act, theta, X, y, w, ETA, RHO, so.draw(k, st - k), alive, 1e6, k, ds)
        k = st
        out.append(model.sharpness(np, act, theta, X, w).mean())
    return np.array(out), theta


def test_one_sam_follows_the_flow_on_its_clock():
    act, X, y, w, theta0 = setup()
    n = X.shape[0]
    fr = flow.run_flow(act, theta0, X, y, w, tol=1e-13, tau_max=8.0, records=40)
    ok = np.isfinite(fr.sharpness)
    taus = np.array([0.005, 0.01, 0.02, 0.05, 0.1, 0.3, 1.0, 2.0])
    steps = np.round(taus * n / (ETA * RHO**2)).astype(int)
    np.testing.assert_allclose(sam.tau_of_step(steps, ETA, RHO, n), taus, rtol=1e-3)
    F_sam, theta = run_sam(act, X, y, w, theta0, steps)
    assert F_sam[-1] < 0.5 * model.sharpness(np, act, theta0[None], X, w)[0]  # 1-SAM lowers F
    assert model.loss(np, act, theta, X, y, w)[0] < 1e-3  # and stays near M

    def miss(scale):
        F_flow = np.interp(np.log(scale * taus), np.log(fr.tau[ok][1:]), fr.sharpness[ok][1:])
        return np.max(np.abs(F_sam - F_flow) / F_flow)

    assert miss(1.0) <= 0.05
    assert miss(0.5) > 0.05 and miss(2.0) > 0.05


def test_random_order_streams_are_per_replica():
    a = sam.SampleOrder("random", 3, 4, 5).draw(0, 50)
    b = sam.SampleOrder("random", 3, 2, 5).draw(0, 50)
    np.testing.assert_array_equal(a[:, :2], b)
    assert not np.array_equal(a[:, 0], a[:, 1])
    c = sam.SampleOrder("cyclic", 3, 2, 5).draw(7, 4)
    np.testing.assert_array_equal(c[:, 0], [2, 3, 4, 0])
