import numpy as np
import pytest

from simbias import ensemble, model, noise, sgd
from simbias.activations import OddPower


def run(theta0, X, y, w, **kw):
    base = dict(eta=0.05, sigma=0.2, steps=200, record_steps=np.array([0, 50, 200]), seed=7)
    base.update(kw)
    return sgd.label_noise_sgd(np, OddPower(1, 0.1), theta0, X, y, w, **base)


def test_sigma_zero_is_plain_gd(small_problem):
    """At σ = 0 both paths are GD (∇L from the model module, summed in another order: to round-off)."""
    act, X, y, w, theta = small_problem
    th = theta.copy()
    for _ in range(100):
        th = th - 0.05 * model.grad_loss(np, act, th, X, y, w)
    kw = dict(sigma=0.0, steps=100, record_steps=np.array([0, 100]))
    # this start (loss ≈ 2-5) amplifies round-off: a 1e-15 relative nudge of θ0 moves θ_100 by
    # 4e-10, so another summation order gets 1e-8
    ref = run(theta, X, y, w, cpu_kernel="numpy", **kw).theta[:, -1]
    np.testing.assert_allclose(ref, th, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(run(theta, X, y, w, **kw).theta[:, -1], ref)  # same order: same bits


def test_replica_stream_independent_of_batch_and_chunk(small_problem):
    """Replica r's trajectory is the same whatever runs beside it and whatever the chunk size."""
    act, X, y, w, theta = small_problem
    three = run(theta, X, y, w)
    five = run(np.concatenate([theta, theta[:2] * 0.5]), X, y, w, chunk=7)
    np.testing.assert_array_equal(five.theta[:3], three.theta)
    one = run(theta[:1], X, y, w, chunk=13)
    np.testing.assert_array_equal(one.theta[0], three.theta[0])
    # and the noise really differs between replicas
    streams = noise.normals(np, 7, [0, 1], 0, 4, X.shape[0])
    assert not np.allclose(streams[:, 0], streams[:, 1])


def test_record_schedule_and_clock():
    s = ensemble.record_schedule(1000, 10, 5)
    assert s[0] == 0 and s[-1] == 1000 and np.all(np.diff(s) > 0)
    assert {250, 500, 750}.issubset(set(s.tolist())) and 1 in s
    assert sgd.tau_of_step(1000, 0.05, 0.03) == pytest.approx(0.05**2 * 0.03**2 * 1000)


def test_divergent_replica_is_frozen_and_flagged(small_problem):
    act, X, y, w, theta = small_problem
    theta = theta.copy()
    theta[0] *= 30.0  # huge weights: the loss explodes at η = 0.05
    res = run(theta, X, y, w, loss_bound=1e6)
    assert res.diverged[0] and res.diverged_step[0] >= 0
    assert np.isnan(res.loss[0, -1])
    assert not res.diverged[1:].any() and np.isfinite(res.loss[1:]).all()


def test_records_match_model(small_problem):
    act, X, y, w, theta = small_problem
    res = run(theta, X, y, w)
    th = res.theta[:, -1]
    np.testing.assert_allclose(res.loss[:, -1], model.loss(np, act, th, X, y, w), rtol=1e-12)
    np.testing.assert_allclose(res.sharpness[:, -1], model.sharpness(np, act, th, X, w), rtol=1e-12)
    np.testing.assert_allclose(res.feature_sv[:, -1], np.linalg.svd(th @ X.T, compute_uv=False), rtol=1e-12)
