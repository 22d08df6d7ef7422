"""The CUDA header (simbias/cuda/sgd_step.cuh) built with g++ and called through ctypes: the very
lines the GPU runs, executed on the CPU, pinned bit for bit to the NumPy reference and the numba
kernel (noise and 2000-step float64/float32 trajectories at the fig1a and fig1b sizes, with a
diverging replica, replicas and steps re-batched)."""

import shutil

import numpy as np
import pytest
from test_fastpath import ACT, diverging_problem, segments
from test_noise import RANDOM123_KAT

from simbias import kernels_cpu, noise, sgd
from simbias.cuda_build import Variant, build_cpu_shim

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")

SIZES = {"fig1a": (10, 3, 3), "fig1b": (30, 10, 15)}


def shim(size="fig1a", dtype="float64"):
    return build_cpu_shim(Variant("thread", dtype, *SIZES[size]))


@pytest.mark.parametrize("ctr, key, want", RANDOM123_KAT)
def test_philox_header_known_answers(ctr, key, want):
    assert shim().philox(ctr, key).tolist() == list(want)


def test_philox_header_normals_bitwise_equal_numpy():
    reps = [0, 7, 2**31 + 1, 2**32 - 1]
    for seed, k0 in ((0, 0), (2**40 + 3, 2**32 - 2), (77, 10**12)):
        np.testing.assert_array_equal(
            shim().normals(seed, reps, k0, 9, 7), noise.normals(np, seed, reps, k0, 9, 7)
        )


def header_segments(sh, theta0, X, y, w, eta, sigma, replicas, k0, cuts):
    """Like test_fastpath.segments, through the header's sb_advance."""
    R = theta0.shape[0]
    th, alive, ds, k = theta0, np.ones(R, bool), np.full(R, -1), k0
    two_eta = np.dtype(theta0.dtype).type(2.0 * eta)
    for end in cuts:
        th, alive = sh.advance(th, X, y, w, ACT.nu, two_eta, sigma, 5, replicas, k, end - k, alive, 1e6, ds)
        k = end
    return th, alive, ds


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("size", ["fig1a", "fig1b"])
def test_bitwise_header_equals_numpy_and_numba_2000_steps(size, dtype):
    """The g++ build of the GPU's per-replica step = the NumPy reference = the numba kernel,
    bit for bit over 2000 noisy steps with a diverging replica, and after re-batching."""
    R = 16
    X, y, w, theta0, eta, sigma = diverging_problem(size, R, dtype)
    rid = np.arange(R)
    k0 = 1000
    ref = segments(sgd.advance, theta0, X, y, w, eta, sigma, rid, k0, [k0 + 2000])
    head = header_segments(shim(size, dtype), theta0, X, y, w, eta, sigma, rid, k0, [k0 + 2000])
    fast = segments(kernels_cpu.advance, theta0, X, y, w, eta, sigma, rid, k0, [k0 + 2000], exact=True)
    assert (ref[2] >= 0).sum() == 2 and ref[2][2] > k0
    for a, b, c in zip(head, ref, fast, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(c, b)
    sub = np.array([2, 9, R - 1, 0])
    cuts = [k0 + 2, k0 + 999, k0 + 2000]
    part = header_segments(shim(size, dtype), theta0[sub], X, y, w, eta, sigma, sub, k0, cuts)
    for a, b in zip(part, ref, strict=True):
        np.testing.assert_array_equal(a, b[sub])


def test_bitwise_header_per_replica_eta_and_sigma():
    """η and σ are per-replica inputs: a batch mixing two (η, σ) equals two separate runs."""
    X, y, w, theta0, eta, sigma = diverging_problem("fig1a", 8, "float64")
    theta0 = theta0[:6]
    sh = shim()
    etas = np.array([eta, eta / 2] * 3)
    sigmas = np.array([sigma, 2 * sigma] * 3)
    ds = np.full(6, -1)
    mixed = sh.advance(
        theta0, X, y, w, ACT.nu, 2.0 * etas, sigmas, 5, np.arange(6), 0, 500, np.ones(6, bool), 1e6, ds
    )
    for e, s, idx in ((eta, sigma, [0, 2, 4]), (eta / 2, 2 * sigma, [1, 3, 5])):
        ref = segments(sgd.advance, theta0[idx], X, y, w, e, s, np.array(idx), 0, [500])
        np.testing.assert_array_equal(mixed[0][idx], ref[0])


class FakeOOM(Exception):
    pass


def test_bitwise_gpu_host_logic_with_the_header_as_launcher(monkeypatch):
    """simbias.gpu.advance's host side (argument layout, per-replica slices, the out-of-memory
    split) driven by the g++ build instead of a CUDA launch: the reference's bits, also when
    every launch of more than 3 replicas runs out of memory and the batch is split."""
    from simbias import gpu

    R = 11
    X, y, w, theta0, eta, sigma = diverging_problem("fig1a", R, "float64")
    sh = shim()
    launches = []

    def launch(variant, args):
        assert variant.kind == "thread" and (variant.m, variant.d, variant.n, variant.half) == (10, 3, 3, 1)
        if args[8] > 3:
            raise FakeOOM
        launches.append(args[8])
        sh.launch(variant, args)

    monkeypatch.setattr(gpu, "out_of_memory_errors", lambda: (FakeOOM,))
    ds = np.full(R, -1)
    th, al = gpu.advance(
        np,
        ACT,
        theta0,
        X,
        y,
        w,
        eta,
        sigma,
        5,
        np.arange(R),
        1000,
        2000,
        np.ones(R, bool),
        1e6,
        ds,
        launch=launch,
    )
    ref = segments(sgd.advance, theta0, X, y, w, eta, sigma, np.arange(R), 1000, [3000])
    assert sum(launches) == R and max(launches) <= 3 and len(launches) >= 4
    np.testing.assert_array_equal(th, ref[0])
    np.testing.assert_array_equal(al, ref[1])
    np.testing.assert_array_equal(ds, ref[2])


def test_gpu_out_of_memory_of_one_replica_is_raised():
    from simbias import gpu

    def run(lo, hi):
        raise FakeOOM

    with pytest.raises(FakeOOM):
        gpu.split_on_oom(run, 0, 4, (FakeOOM,))
