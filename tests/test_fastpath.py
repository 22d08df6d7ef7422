"""The compiled CPU fast path (simbias.kernels_cpu) pinned to the NumPy reference (sgd.advance).

Both consume the same per-replica noise streams, so trajectories agree to round-off.
Problems are kept well conditioned (small initial weights, stable η): at the edge of
stability (e.g. fig1b's η = 0.1 with σ = 0) plain GD is chaotic and any two
summation orders drift apart, whichever is right.
"""

import numpy as np
import pytest

from simbias import sgd
from simbias.activations import OddPower

kernels_cpu = pytest.importorskip("simbias.kernels_cpu")

ACT = OddPower(k=1, nu=0.1)

# (m, d, n, eta, sigma, label high): fig1a and fig2 sizes take the loop and lane
# kernels, the fig1b size the BLAS one (fig2's and fig1b's η lowered so GD at σ = 0,
# with these second-layer weights, stays clear of the edge of stability)
SIZES = {
    "fig1a": (10, 3, 3, 0.05, 0.03, 1.0),
    "fig2": (10, 5, 6, 0.03, 0.2, 1.0),
    "fig1b": (30, 10, 15, 0.02, 0.2, 0.3),
}


def problem(m, d, n, R, high, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X, rng.uniform(0, high, n), rng.uniform(0.5, 1.5, m), 0.1 * rng.standard_normal((R, m, d))


def both(theta0, X, y, w, dtype="float64", **kw):
    base = dict(eta=0.05, sigma=0.03, steps=300, record_steps=np.array([0, 1, 50, 300]), seed=11)
    base.update(kw)
    fast = sgd.label_noise_sgd(np, ACT, theta0, X, y, w, dtype=dtype, cpu_kernel="numba", **base)
    ref = sgd.label_noise_sgd(np, ACT, theta0, X, y, w, dtype=dtype, cpu_kernel="numpy", **base)
    assert fast.kernel == "numba" and ref.kernel == "numpy"
    return fast, ref


def assert_same_run(fast, ref, rtol):
    scale = np.nanmax(np.abs(ref.theta))
    np.testing.assert_allclose(fast.theta, ref.theta, rtol=0, atol=rtol * scale)
    for name in ("loss", "sharpness", "feature_sv", "weight_sv"):
        a, b = getattr(fast, name), getattr(ref, name)
        np.testing.assert_allclose(a, b, rtol=1e3 * rtol, atol=rtol * np.nanmax(np.abs(b)), err_msg=name)
    np.testing.assert_array_equal(fast.diverged_step, ref.diverged_step)


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("R", [3, 20])
@pytest.mark.parametrize("noise", [False, True])
def test_trajectories_match_reference_float64(size, R, noise):
    """σ = 0 and with noise, a few hundred steps: the same trajectory to ~1e-12."""
    m, d, n, eta, sigma, high = SIZES[size]
    X, y, w, theta0 = problem(m, d, n, R, high)
    fast, ref = both(theta0, X, y, w, eta=eta, sigma=sigma if noise else 0.0)
    assert_same_run(fast, ref, rtol=1e-12)
    assert not fast.diverged.any()


def test_divergence_handled_identically():
    """A replica blowing up is frozen at the same step, with NaN records after it, on both paths."""
    m, d, n, eta, sigma, high = SIZES["fig1a"]
    X, y, w, theta0 = problem(m, d, n, 20, high)
    theta0[[2, 11]] *= 40.0  # loss explodes within a few steps
    theta0[5] *= 1e30  # loss far above the bound from the start: diverged at step 0
    fast, ref = both(theta0, X, y, w, eta=eta, sigma=sigma, loss_bound=1e6)
    assert set(np.flatnonzero(fast.diverged)) == {2, 5, 11}
    assert fast.diverged_step[5] == 0
    np.testing.assert_array_equal(fast.diverged_step, ref.diverged_step)
    np.testing.assert_array_equal(np.isnan(fast.loss), np.isnan(ref.loss))
    ok = ~ref.diverged
    np.testing.assert_allclose(
        fast.theta[ok], ref.theta[ok], rtol=0, atol=1e-12 * np.abs(ref.theta[ok]).max()
    )


def test_segment_function_freezes_before_the_failing_step():
    """advance() itself: state, alive mask and diverged_step as the reference leaves them."""
    m, d, n, eta, sigma, high = SIZES["fig2"]
    X, y, w, theta0 = problem(m, d, n, 9, high)
    theta0[4] *= 30.0
    zeta = 0.1 * np.random.default_rng(0).standard_normal((40, 9, n))
    theta_in = theta0.copy()
    out = []
    for fn in (sgd.advance, kernels_cpu.advance):
        ds = np.full(9, -1)
        th, alive = fn(np, ACT, theta0, X, y, w, eta, zeta, np.ones(9, bool), 1e6, 100, ds)
        out.append((th, alive, ds))
    (th_r, al_r, ds_r), (th_f, al_f, ds_f) = out
    np.testing.assert_array_equal(al_f, al_r)
    np.testing.assert_array_equal(ds_f, ds_r)
    assert ds_f[4] >= 100 and not al_f[4]
    np.testing.assert_allclose(th_f, th_r, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(theta0, theta_in)  # the input is not modified in place


@pytest.mark.parametrize("size", ["fig1a", "fig1b"])
def test_float32(size):
    m, d, n, eta, sigma, high = SIZES[size]
    X, y, w, theta0 = problem(m, d, n, 20, high)
    fast, ref = both(theta0, X, y, w, dtype="float32", eta=eta, sigma=sigma)
    assert np.isfinite(fast.theta).all() and not fast.diverged.any()
    np.testing.assert_allclose(fast.theta, ref.theta, rtol=0, atol=1e-4 * np.abs(ref.theta).max())
    np.testing.assert_allclose(fast.sharpness, ref.sharpness, rtol=1e-4)


def test_ensemble_statistics_match_with_noise():
    """fig1a regime, 64 replicas, 4000 noisy steps: the ensemble's records agree."""
    m, d, n, eta, sigma, high = SIZES["fig1a"]
    X, y, w, theta0 = problem(m, d, n, 64, high, seed=6)
    rec = np.array([0, 1000, 4000])
    fast, ref = both(theta0, X, y, w, eta=eta, sigma=sigma, steps=4000, record_steps=rec)
    for name in ("loss", "sharpness"):
        a, b = getattr(fast, name)[:, -1], getattr(ref, name)[:, -1]
        assert np.mean(a) == pytest.approx(np.mean(b), rel=1e-9), name
        assert np.std(a) == pytest.approx(np.std(b), rel=1e-9), name
    fsv_a, fsv_b = fast.feature_sv[:, -1], ref.feature_sv[:, -1]
    np.testing.assert_allclose(np.median(fsv_a, axis=0), np.median(fsv_b, axis=0), rtol=1e-9)
    # state tolerance: every replica's θ, not only the averages
    np.testing.assert_allclose(fast.theta, ref.theta, rtol=0, atol=1e-10 * np.abs(ref.theta).max())


def test_replica_bits_do_not_depend_on_batch_or_kernel():
    """Lanes (many replicas) and one-at-a-time loops (few) give the same bits per replica."""
    m, d, n, eta, sigma, high = SIZES["fig2"]
    X, y, w, theta0 = problem(m, d, n, 40, high)
    kw = dict(eta=eta, sigma=sigma, steps=200, record_steps=np.array([0, 200]), seed=4, cpu_kernel="numba")
    many = sgd.label_noise_sgd(np, ACT, theta0, X, y, w, **kw)
    few = sgd.label_noise_sgd(np, ACT, theta0[:3], X, y, w, chunk=37, **kw)
    assert kernels_cpu.choose(40, m, d, n, 1)[0] == "lanes"
    assert kernels_cpu.choose(3, m, d, n, 2)[0] == "loops"
    np.testing.assert_array_equal(many.theta[:3], few.theta)


def test_dispatch(monkeypatch):
    monkeypatch.delenv("SIMBIAS_CPU_KERNEL", raising=False)
    assert sgd.select_advance(np, ACT, "float64")[1] == "numba"
    assert sgd.select_advance(np, ACT, "float64", "numpy") == (sgd.advance, "numpy")
    monkeypatch.setenv("SIMBIAS_CPU_KERNEL", "numpy")
    assert sgd.select_advance(np, ACT, "float64")[1] == "numpy"
    assert sgd.select_advance(np, ACT, "float64", "numba")[1] == "numba"  # an explicit choice wins
    monkeypatch.delenv("SIMBIAS_CPU_KERNEL")

    class Relu:  # not the OddPower family: the reference runs, and "numba" refuses
        pass

    assert sgd.select_advance(np, Relu(), "float64")[1] == "numpy"
    with pytest.raises(RuntimeError, match="not usable"):
        sgd.select_advance(np, Relu(), "float64", "numba")
    with pytest.raises(ValueError, match="unknown cpu_kernel"):
        sgd.select_advance(np, ACT, "float64", "fortran")


def test_threads_follow_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert kernels_cpu.threads() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert kernels_cpu.threads() >= 1
