"""The SGD-to-flow clock τ = η²σ²k (docs/math.md, Li, Wang & Arora 2021), checked statistically.

64 replicas of label-noise SGD start on M at the same point as the flow. At every
record with τ ≥ 0.005 the ensemble mean of F must match the flow's F within
4 standard errors of the mean plus a 3% relative allowance for the O(η) bias
(SGD iterates sit a distance O(√η σ) off M, where F differs from its value on M).

It runs at two (η, σ) pairs with the same η²σ² and σ ≠ 1 (σ = 0.5 and σ = 0.25): a
clock or a noise scale with the wrong power of σ (τ = η²σk, noise ∝ √σ) is then off by
a factor 1/σ (2 and 4), and fails; the two pairs share the flow and the step counts.
(σ > 1 at this η²σ² puts SGD so far off M that the ensemble's spread hides a factor 2.) The same comparison with the clock off by a factor of 2 either way must fail,
so the test can tell a right clock from a wrong one. ``tests/mutate_clock.py`` breaks
the clock and the noise on purpose and shows that this test fails for each.
"""

import numpy as np
import pytest
from conftest import problem_on_manifold

from simbias import flow, sgd

# (η, σ) pairs with η²σ² = 2.5e-5, σ ≠ 1
PAIRS = [(0.01, 0.5), (0.02, 0.25)]
R = 64
TAU_CHECK = np.array([0.005, 0.01, 0.02, 0.05, 0.1, 0.3, 1.0, 2.0])


def discrepancies(tau, F_mean, F_se, flow_tau, flow_F, scale):
    """(|mean − flow(scale·τ)| − 4 SE) / (0.03 · flow) at each record: > 1 means a miss."""
    F_flow = np.interp(np.log(scale * tau), np.log(flow_tau[1:]), flow_F[1:])
    return (np.abs(F_mean - F_flow) - 4 * F_se) / (0.03 * F_flow)


@pytest.fixture(scope="module")
def reference():
    act, X, y, w, theta0 = problem_on_manifold()
    fr = flow.run_flow(act, theta0, X, y, w, tol=1e-13, tau_max=8.0, records=40)
    ok = np.isfinite(fr.sharpness)
    return (act, X, y, w, theta0), fr.tau[ok], fr.sharpness[ok]


@pytest.mark.parametrize("eta,sigma", PAIRS)
def test_sgd_mean_sharpness_tracks_flow_on_tau_axis(reference, eta, sigma):
    (act, X, y, w, theta0), flow_tau, flow_F = reference
    assert flow_F[0] - flow_F[-1] > 5.0  # F really moves on this time scale
    # the steps that should land on TAU_CHECK, from the step size per τ (η²σ²) alone
    steps = np.round(TAU_CHECK / (eta * eta * sigma * sigma)).astype(int)
    res = sgd.label_noise_sgd(
        np,
        act,
        np.repeat(theta0[None], R, axis=0),
        X,
        y,
        w,
        eta=eta,
        sigma=sigma,
        steps=int(steps[-1]),
        record_steps=np.concatenate([[0], steps]),
        seed=11,
    )
    assert not res.diverged.any()
    F = res.sharpness[:, 1:]
    tau = sgd.tau_of_step(steps, eta, sigma)
    mean, se = F.mean(axis=0), F.std(axis=0, ddof=1) / np.sqrt(R)
    right = discrepancies(tau, mean, se, flow_tau, flow_F, 1.0)
    assert np.all(right <= 1.0), right
    for wrong in (0.5, 2.0):
        assert np.max(discrepancies(tau, mean, se, flow_tau, flow_F, wrong)) > 1.0, wrong
