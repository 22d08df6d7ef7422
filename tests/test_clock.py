"""The SGD-to-flow clock τ = η²σ²k (docs/math.md, Li, Wang & Arora 2021), checked statistically.

64 replicas of label-noise SGD start on M at the same point as the flow. At every
record with τ ≥ 0.005 the ensemble mean of F must match the flow's F within
4 standard errors of the mean plus a 3% relative allowance for the O(η) bias
(SGD iterates sit a distance O(ησ) off M, where F differs from its value on M).
The same comparison with the clock off by a factor of 2 either way must fail, so
the test can tell a right clock from a wrong one.
"""

import numpy as np
from conftest import problem_on_manifold

from simbias import flow, sgd

ETA, SIGMA, R = 0.005, 1.0, 64


def discrepancies(tau, F_mean, F_se, flow_tau, flow_F, scale):
    """(|mean − flow(scale·τ)| − 4 SE) / (0.03 · flow) at each record: > 1 means a miss."""
    F_flow = np.interp(np.log(scale * tau), np.log(flow_tau[1:]), flow_F[1:])
    return (np.abs(F_mean - F_flow) - 4 * F_se) / (0.03 * F_flow)


def test_sgd_mean_sharpness_tracks_flow_on_tau_axis():
    act, X, y, w, theta0 = problem_on_manifold()
    fr = flow.run_flow(act, theta0, X, y, w, tol=1e-13, tau_max=8.0, records=40)
    ok = np.isfinite(fr.sharpness)
    flow_tau, flow_F = fr.tau[ok], fr.sharpness[ok]
    assert flow_F[0] - flow_F[-1] > 5.0  # F really moves on this time scale

    tau_check = np.array([0.005, 0.01, 0.02, 0.05, 0.1, 0.3, 1.0, 2.0])
    steps = np.round(tau_check / (ETA**2 * SIGMA**2)).astype(int)
    res = sgd.label_noise_sgd(
        np,
        act,
        np.repeat(theta0[None], R, axis=0),
        X,
        y,
        w,
        eta=ETA,
        sigma=SIGMA,
        steps=int(steps[-1]),
        record_steps=np.concatenate([[0], steps]),
        seed=11,
    )
    assert not res.diverged.any()
    F = res.sharpness[:, 1:]
    tau = sgd.tau_of_step(steps, ETA, SIGMA)
    mean, se = F.mean(axis=0), F.std(axis=0, ddof=1) / np.sqrt(R)
    right = discrepancies(tau, mean, se, flow_tau, flow_F, 1.0)
    assert np.all(right <= 1.0), right
    for wrong in (0.5, 2.0):
        assert np.max(discrepancies(tau, mean, se, flow_tau, flow_F, wrong)) > 1.0, wrong
