"""The compiled CPU fast path (simbias.kernels_cpu) pinned to the NumPy reference (sgd.advance).

Both draw the label noise from the same counter-based stream (simbias.noise) and sum in
the same order, so the loop and lane kernels give the reference's trajectories bit for
bit (``test_bitwise_*``); the BLAS kernel (large models) sums its matrix products in
BLAS's order and is compared within a stated tolerance. Problems are kept well
conditioned (small initial weights, stable η): at the edge of stability (e.g. fig1b's
η = 0.1 with σ = 0) plain GD is chaotic and any two summation orders drift apart.
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
# θ0 scale factors that make a replica diverge within a few steps, per size
BLOW_UP = {"fig1a": 6.0, "fig2": 30.0, "fig1b": 4.0}


def problem(m, d, n, R, high, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X, rng.uniform(0, high, n), rng.uniform(0.5, 1.5, m), 0.1 * rng.standard_normal((R, m, d))


def segments(fn, theta0, X, y, w, eta, sigma, replicas, k0, cuts, **kw):
    """Run ``fn`` (a segment function) from step k0 through the segments ending at ``cuts``."""
    R = theta0.shape[0]
    th, alive, ds, k = theta0, np.ones(R, bool), np.full(R, -1), k0
    for end in cuts:
        th, alive = fn(np, ACT, th, X, y, w, eta, sigma, 5, replicas, k, end - k, alive, 1e6, ds, **kw)
        k = end
    return th, alive, ds


def diverging_problem(size, R, dtype):
    m, d, n, eta, sigma, high = SIZES[size]
    X, y, w, theta0 = problem(m, d, n, R, high)
    theta0[2] *= BLOW_UP[size]  # diverges after a few steps
    theta0[R - 1] *= 1e30  # loss overflows to inf before the first step
    return tuple(a.astype(dtype) for a in (X, y, w, theta0)) + (eta, sigma)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("size", ["fig1a", "fig1b"])
def test_bitwise_numba_equals_numpy_reference_2000_steps(size, dtype):
    """2000 noisy steps, a replica diverging mid-segment: the loop and lane kernels (``exact``
    for fig1b, which otherwise takes BLAS) give the reference's θ, alive mask and divergence
    steps bit for bit, also with replicas and steps re-batched."""
    R = 24
    X, y, w, theta0, eta, sigma = diverging_problem(size, R, dtype)
    rid = np.arange(R)
    k0 = 1000  # a segment that does not start at step 0
    ref = segments(sgd.advance, theta0, X, y, w, eta, sigma, rid, k0, [k0 + 2000])
    assert ref[2][2] > k0 and ref[2][R - 1] == k0 and (ref[2] >= 0).sum() == 2
    assert not ref[1][[2, R - 1]].any() and ref[1][:2].all()
    m, d, n = theta0.shape[1:] + (X.shape[0],)
    many = kernels_cpu.choose(R, m, d, n, 1, exact=True)[0]
    assert many == ("lanes" if size == "fig1a" else "loops")
    fast = segments(kernels_cpu.advance, theta0, X, y, w, eta, sigma, rid, k0, [k0 + 2000], exact=True)
    for a, b in zip(fast, ref, strict=True):
        np.testing.assert_array_equal(a, b)
    # re-batched: 5 replicas (one at a time) picked out of the middle, steps cut at odd places
    sub = np.array([1, 2, 7, 11, R - 1])
    cuts = [k0 + 1, k0 + 3, k0 + 700, k0 + 2000]
    part = segments(kernels_cpu.advance, theta0[sub], X, y, w, eta, sigma, sub, k0, cuts, exact=True)
    for a, b in zip(part, ref, strict=True):
        np.testing.assert_array_equal(a, b[sub])
    assert kernels_cpu.choose(len(sub), m, d, n, 1, exact=True)[0] == "loops"


@pytest.mark.parametrize("size", ["fig1a", "fig1b"])
def test_bitwise_per_replica_eta_sigma_equals_scalar_runs(size):
    """A (η, σ) grid in one call (one value per replica, σ = 0 among them) gives, replica for
    replica, the bits of separate calls with scalar η and σ: the reference, and the numba
    kernels as chosen for the batch (lanes at fig1a, BLAS at fig1b) and for the groups."""
    m, d, n, eta0, sigma0, high = SIZES[size]
    grid = [(eta0, sigma0), (eta0 / 2, sigma0), (eta0, 0.0), (eta0 / 3, 2 * sigma0)]
    per = 8  # replicas per grid point: 32 in all, enough for the lane kernel on 2 threads
    R = per * len(grid)
    X, y, w, theta0 = problem(m, d, n, R, high)
    eta = np.repeat([g[0] for g in grid], per)
    sigma = np.repeat([g[1] for g in grid], per)
    rid = np.arange(R)
    if size == "fig1a":
        assert kernels_cpu.choose(R, m, d, n, 2)[0] == "lanes"
    for fn in (sgd.advance, kernels_cpu.advance):
        whole = segments(fn, theta0, X, y, w, eta, sigma, rid, 7, [300, 517])
        assert whole[1].all()
        for g, (e, sg) in enumerate(grid):
            sl = slice(g * per, (g + 1) * per)
            part = segments(fn, theta0[sl], X, y, w, e, sg, rid[sl], 7, [300, 517])
            for a, b in zip(part, whole, strict=True):
                np.testing.assert_array_equal(a, b[sl])
        # σ = 0 is GD: its replicas do not depend on the seed's noise at all
        sl = slice(2 * per, 3 * per)
        gd = segments(fn, theta0[sl], X, y, w, eta0, 0.0, rid[sl] + 1000, 7, [517])
        np.testing.assert_array_equal(gd[0], whole[0][sl])
    ref = segments(sgd.advance, theta0, X, y, w, eta, sigma, rid, 7, [517])
    fast = segments(kernels_cpu.advance, theta0, X, y, w, eta, sigma, rid, 7, [517])
    if size == "fig1a":
        np.testing.assert_array_equal(fast[0], ref[0])
    else:
        np.testing.assert_allclose(fast[0], ref[0], rtol=0, atol=1e-12 * np.abs(ref[0]).max())


def test_blas_kernel_within_tolerance_of_reference():
    """fig1b's default kernel (BLAS matrix products, another summation order): within 1e-12
    of the reference's θ (relative to max |θ|) after 2000 noisy steps; divergence identical."""
    R = 12
    X, y, w, theta0, eta, sigma = diverging_problem("fig1b", R, "float64")
    assert kernels_cpu.choose(R, 30, 10, 15, 1)[0] == "blas"
    ref = segments(sgd.advance, theta0, X, y, w, eta, sigma, np.arange(R), 0, [2000])
    fast = segments(kernels_cpu.advance, theta0, X, y, w, eta, sigma, np.arange(R), 0, [2000])
    np.testing.assert_array_equal(fast[2], ref[2])
    ok = ref[1]
    scale = np.abs(ref[0][ok]).max()
    np.testing.assert_allclose(fast[0][ok], ref[0][ok], rtol=0, atol=1e-12 * scale)
    assert not np.array_equal(fast[0][ok], ref[0][ok])  # it does sum in another order


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
    """σ = 0 and with noise, through label_noise_sgd: fig1a/fig2 bit for bit, fig1b (BLAS) to 1e-12."""
    m, d, n, eta, sigma, high = SIZES[size]
    X, y, w, theta0 = problem(m, d, n, R, high)
    fast, ref = both(theta0, X, y, w, eta=eta, sigma=sigma if noise else 0.0)
    if size == "fig1b":
        assert_same_run(fast, ref, rtol=1e-12)
    else:
        np.testing.assert_array_equal(fast.theta, ref.theta)
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
    np.testing.assert_array_equal(fast.theta, ref.theta)


def test_segment_function_freezes_before_the_failing_step():
    """advance() itself: state, alive mask and diverged_step as the reference leaves them."""
    m, d, n, eta, sigma, high = SIZES["fig2"]
    X, y, w, theta0 = problem(m, d, n, 9, high)
    theta0[4] *= 30.0
    theta_in = theta0.copy()
    out = []
    for fn in (sgd.advance, kernels_cpu.advance):
        ds = np.full(9, -1)
        th, alive = fn(
            np, ACT, theta0, X, y, w, eta, 0.1, 0, np.arange(9), 100, 40, np.ones(9, bool), 1e6, ds
        )
        out.append((th, alive, ds))
    (th_r, al_r, ds_r), (th_f, al_f, ds_f) = out
    np.testing.assert_array_equal(al_f, al_r)
    np.testing.assert_array_equal(ds_f, ds_r)
    assert ds_f[4] >= 100 and not al_f[4]
    np.testing.assert_array_equal(th_f, th_r)
    np.testing.assert_array_equal(theta0, theta_in)  # the input is not modified in place


def test_reference_draws_no_noise_at_sigma_zero(monkeypatch):
    """σ = 0: the reference never calls the noise stream (and the kernel gives the same bits)."""
    m, d, n, eta, sigma, high = SIZES["fig1a"]
    X, y, w, theta0 = problem(m, d, n, 4, high)

    def refuse(*a, **k):
        raise AssertionError("noise drawn at sigma = 0")

    monkeypatch.setattr(sgd.noise, "normals", refuse)
    ref = segments(sgd.advance, theta0, X, y, w, eta, 0.0, np.arange(4), 0, [50])
    fast = segments(kernels_cpu.advance, theta0, X, y, w, eta, 0.0, np.arange(4), 0, [50])
    np.testing.assert_array_equal(fast[0], ref[0])


@pytest.mark.parametrize("size", ["fig1a", "fig1b"])
def test_float32(size):
    m, d, n, eta, sigma, high = SIZES[size]
    X, y, w, theta0 = problem(m, d, n, 20, high)
    fast, ref = both(theta0, X, y, w, dtype="float32", eta=eta, sigma=sigma)
    assert np.isfinite(fast.theta).all() and not fast.diverged.any()
    assert fast.theta.dtype == np.float64  # records are float64 whatever the working dtype
    np.testing.assert_allclose(fast.theta, ref.theta, rtol=0, atol=1e-4 * np.abs(ref.theta).max())
    np.testing.assert_allclose(fast.sharpness, ref.sharpness, rtol=1e-4)


def test_ensemble_statistics_match_with_noise():
    """fig1a regime, 64 replicas, 4000 noisy steps: the ensemble's records agree bit for bit."""
    m, d, n, eta, sigma, high = SIZES["fig1a"]
    X, y, w, theta0 = problem(m, d, n, 64, high, seed=6)
    rec = np.array([0, 1000, 4000])
    fast, ref = both(theta0, X, y, w, eta=eta, sigma=sigma, steps=4000, record_steps=rec)
    for name in ("theta", "loss", "sharpness", "feature_sv"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(ref, name), err_msg=name)


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
