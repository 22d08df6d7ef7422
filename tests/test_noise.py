"""The label-noise stream (simbias.noise; docs/noise_stream.md): Philox4x32-10 checked against
Random123's published known answers and the independent randomgen implementation, the
normals' distribution, and the same bits from the NumPy reference and the numba kernel."""

import numpy as np
import pytest
from scipy import stats

from simbias import noise

# Random123 tests/kat_vectors, the three "philox4x32 10" lines: counter[4] key[2] -> output[4]
RANDOM123_KAT = [
    ((0x00000000,) * 4, (0x00000000,) * 2, (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


def u32(*v):
    return [np.uint32(x) for x in v]


@pytest.mark.parametrize("ctr, key, want", RANDOM123_KAT)
def test_philox_known_answers_random123(ctr, key, want):
    got = noise.philox4x32(np, *u32(*ctr), *u32(*key))
    assert [int(g) for g in got] == list(want)


def test_philox_known_answers_break_with_nine_rounds():
    """The known answers pin the round count: 9 rounds do not reproduce them."""
    ctr, key, want = RANDOM123_KAT[2]
    assert [int(g) for g in noise.philox4x32(np, *u32(*ctr), *u32(*key), rounds=9)] != list(want)


def test_philox_matches_randomgen():
    """randomgen's Philox(4, 32) (an independent implementation) gives the same blocks.

    randomgen adds one to the counter before its first block, so it is started at c − 1.
    Counters span a carry out of word 0 and keys both 32-bit halves of a 64-bit seed.
    """
    randomgen = pytest.importorskip("randomgen")
    rng = np.random.default_rng(0)
    for seed in (0, 5, 2**32 + 7, 2**64 - 1, int(rng.integers(0, 2**63))):
        lo, hi = noise.seed_key(seed)
        for start in (0, 2**32 - 3, int(rng.integers(0, 2**62))):
            g = randomgen.Philox(
                key=lo | hi << 32, counter=start - 1 if start else 2**128 - 1, number=4, width=32
            )
            raw = g.random_raw(4 * 6).astype(np.uint64).reshape(6, 4)
            c = start + np.arange(6, dtype=object)
            words = [
                np.array([(int(ci) >> (32 * w)) & 0xFFFFFFFF for ci in c], dtype=np.uint32) for w in range(4)
            ]
            got = noise.philox4x32(np, *words, np.uint32(lo), np.uint32(hi))
            np.testing.assert_array_equal(np.stack(got, axis=1), raw.astype(np.uint32))


def test_philox_log_and_sincos_accurate():
    """The + − × ÷ log and sin/cos are within 2 ulp of libm's over their whole ranges."""
    u = np.concatenate(
        [np.random.default_rng(1).uniform(0, 1, 200_000), [2.0**-53, 0.5, noise.SQRT_HALF, 1.0]]
    )
    u = u[u > 0]
    lg = noise.log_unit(np, u)
    assert np.all(np.abs(lg - np.log(u)) <= 2 * np.spacing(np.abs(np.log(u)) + 1e-300))
    assert noise.log_unit(np, np.array([1.0]))[0] == 0.0
    t = np.arange(2**16) / 2**16
    s, c = noise.sincos_2pi(np, t)
    # reference: sin(2πt) in extended precision via the exactly reduced angle
    ref_s = np.sin(np.pi * 2 * t.astype(np.longdouble)).astype(float)
    ref_c = np.cos(np.pi * 2 * t.astype(np.longdouble)).astype(float)
    assert np.max(np.abs(s - ref_s)) <= 4e-16 and np.max(np.abs(c - ref_c)) <= 4e-16
    assert s[0] == 0.0 and c[0] == 1.0 and s[2**14] == 1.0 and c[2**15] == -1.0


def test_philox_normals_are_standard_normal():
    """2·10⁶ normals (100 replicas × 4000 steps × 5): mean, variance and Kolmogorov–Smirnov.

    Tolerances: mean within 5 standard errors (5/√N ≈ 0.0035), variance within 5 standard
    errors (5·√(2/N) ≈ 0.005), KS p > 1e-4; pairs from one block uncorrelated (|ρ| < 0.005).
    """
    z = noise.normals(np, 123, np.arange(100), 10**9, 4000, 5)
    assert z.shape == (4000, 100, 5) and z.dtype == np.float64
    N = z.size
    assert abs(z.mean()) < 5 / np.sqrt(N)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / N)
    assert stats.kstest(z.ravel()[:200_000], "norm").pvalue > 1e-4
    assert abs(np.corrcoef(z[..., 0].ravel(), z[..., 1].ravel())[0, 1]) < 0.005
    assert abs(np.corrcoef(z[:-1, :, 0].ravel(), z[1:, :, 0].ravel())[0, 1]) < 0.005  # step to step


def test_philox_normals_are_a_pure_function_of_seed_replica_step_index():
    """Blocks of steps, subsets of replicas and fewer draws per step cut the same numbers."""
    full = noise.normals(np, 9, np.arange(6), 100, 50, 5)
    np.testing.assert_array_equal(noise.normals(np, 9, [4, 1], 120, 7, 5), full[20:27][:, [4, 1]])
    np.testing.assert_array_equal(noise.normals(np, 9, np.arange(6), 100, 50, 3), full[..., :3])
    assert not np.array_equal(noise.normals(np, 10, np.arange(6), 100, 50, 5), full)
    big = noise.normals(np, 9, [0], 2**32 + 5, 2, 2)  # steps past 2³² use the counter's third word
    assert not np.array_equal(big, noise.normals(np, 9, [0], 5, 2, 2))
    with pytest.raises(ValueError, match="seed"):
        noise.normals(np, -1, [0], 0, 1, 1)


def test_philox_numba_normals_bitwise_equal_numpy():
    kernels_cpu = pytest.importorskip("simbias.kernels_cpu")
    reps = np.array([0, 3, 2**31 + 1, 2**32 - 1])
    for seed, k0 in ((0, 0), (2**40 + 3, 2**32 - 2), (77, 10**12)):
        lo, hi = noise.seed_key(seed)
        got = kernels_cpu.normals(np.uint64(lo), np.uint64(hi), reps, k0, 9, 7)
        np.testing.assert_array_equal(got, noise.normals(np, seed, reps, k0, 9, 7))
