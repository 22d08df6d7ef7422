"""Label-noise SGD on the GPU: the CUDA kernels of ``simbias/cuda/`` as a CuPy RawModule.

:func:`advance` has the signature of :func:`simbias.sgd.advance` on CuPy arrays. One launch
runs a whole segment (many steps) for every replica; state stays on the GPU, and the
loop copies back only the alive mask per segment and θ at record and checkpoint steps.
η and σ may be per-replica arrays, so one launch can run an (η, σ) sweep.

Two kernels (``kernels.cu``), chosen by size (:func:`choose_kernel`): one thread per
replica with θ in registers for small models (fig1a), one block per replica with a
thread per neuron for larger ones (fig1b and up). Sizes, dtype and the activation's
power are compile-time constants; built modules are cached per variant (and by CuPy on
disk). Exact mode (default) compiles with ``-fmad=false`` and the stream's own
log/sin/cos, so the thread kernel gives the CPU's bits; fast mode allows fused
multiply–adds and CUDA's log and sincospi. The divergence rule is the CPU's: a replica
whose loss before a step is non-finite or above the bound is frozen, flagged, and its
step recorded. A GPU out-of-memory splits the replicas into halves, again and again:
the noise is counter-based, so the result is identical.

Imports only NumPy (CuPy when a kernel runs): ``python -m simbias.gpu_check`` needs no more.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from .cuda_build import Variant, source
from .noise import seed_key

log = logging.getLogger(__name__)

# registers: θ (m·d), D (m·n), f and λ (2n) per thread for the thread kernel, d + n per thread
# for the block kernel; ptxas reports no spills at the sizes tests/test_nvrtc.py compiles within
# these budgets (fig1a; fig1b and (64, 24, 24)). Past them: (16, 6, 6) spills in the thread
# kernel, (256, 64, 32) in the block kernel (1.4 kB per thread, float64, sm_90).
THREAD_MAX_VALUES = {"float64": 80, "float32": 80}
BLOCK_MAX_VALUES = {"float64": 48, "float32": 48}
THREAD_BLOCK = 128  # replicas per block of the thread kernel


def choose_kernel(m: int, d: int, n: int, dtype: str) -> str:
    """'thread' while a replica's θ, D, f and λ fit one thread's registers, else 'block'."""
    if m * d + m * n + 2 * n <= THREAD_MAX_VALUES[dtype]:
        return "thread"
    if d + n > BLOCK_MAX_VALUES[dtype]:
        _warn_spill(m, d, n)
    return "block"


@functools.cache
def _warn_spill(m: int, d: int, n: int) -> None:
    """Once per size and process (the kernel is chosen again at every segment)."""
    log.warning("(m, d, n) = (%d, %d, %d) exceeds the block kernel's register budget: it will spill", m, d, n)


_MODULES: dict[Variant, Any] = {}


def kernel_function(variant: Variant):
    """The compiled kernel of ``variant`` (built once per process, cached)."""
    if variant not in _MODULES:
        import cupy

        _MODULES[variant] = cupy.RawModule(code=source(), options=tuple(variant.options()))
    return _MODULES[variant].get_function(variant.name)


def out_of_memory_errors() -> tuple[type[BaseException], ...]:
    try:
        import cupy

        return (cupy.cuda.memory.OutOfMemoryError,)
    except Exception:  # pragma: no cover - without CuPy nothing runs out of GPU memory
        return (MemoryError,)


def split_on_oom(
    run: Callable[[int, int], None], lo: int, hi: int, errors: tuple[type[BaseException], ...]
) -> int:
    """Call ``run(lo, hi)``; on an out-of-memory error run the two halves instead, recursively.

    Returns the number of chunks that ran. A single replica that does not fit re-raises.
    """
    try:
        run(lo, hi)
        return 1
    except errors:
        if hi - lo <= 1:
            raise
        mid = (lo + hi) // 2
        log.warning("GPU out of memory for replicas %d..%d: splitting into two chunks", lo, hi - 1)
        return split_on_oom(run, lo, mid, errors) + split_on_oom(run, mid, hi, errors)


# fmt: off
def advance(xp, act, theta, X, y, w, eta, sigma, seed: int, replicas, k0: int, steps: int, alive,
            loss_bound: float, diverged_step, *, fast: bool = False, kind: str | None = None,
            launch: Callable | None = None):
    # fmt: on
    """:func:`simbias.sgd.advance` on the GPU for the OddPower family; η, σ scalars or (R,) arrays.

    ``kind`` forces 'thread' or 'block'; ``launch(variant, lo, hi, args)`` replaces the
    CUDA launch (tests drive the host logic with the g++ build). Returns new (θ, alive).
    """
    R, m, d = theta.shape
    n = X.shape[0]
    dtype = str(np.dtype(theta.dtype))
    variant = Variant(kind or choose_kernel(m, d, n, dtype), dtype, m, d, n, (act.p - 1) // 2, fast)
    dt = np.dtype(dtype).type
    th = xp.array(theta, dtype=dtype, order="C", copy=True)
    Xc, yc, wc = (xp.ascontiguousarray(xp.asarray(a, dtype=dtype)) for a in (X, y, w))
    two_eta = (xp.asarray(eta, dtype=xp.float64) * 2.0).astype(dtype)  # 2η in float64, then rounded
    two_eta = xp.ascontiguousarray(xp.broadcast_to(two_eta, (R,)))
    sig = xp.ascontiguousarray(xp.broadcast_to(xp.asarray(sigma, dtype=xp.float64), (R,)))
    rids = xp.ascontiguousarray(xp.asarray(replicas, dtype=xp.int64))
    al = xp.asarray(alive).astype(xp.uint8)
    ds = xp.asarray(np.asarray(diverged_step, dtype=np.int64))
    key0, key1 = seed_key(seed)
    launch = launch or _cuda_launch

    def run(lo: int, hi: int) -> None:
        args = (th[lo:hi], Xc, yc, wc, dt(act.nu), two_eta[lo:hi], sig[lo:hi], rids[lo:hi], hi - lo)
        args += (key0, key1, int(k0), int(steps), float(loss_bound), al[lo:hi], ds[lo:hi])
        launch(variant, args)

    split_on_oom(run, 0, R, out_of_memory_errors())
    diverged_step[...] = ds.get() if hasattr(ds, "get") else ds
    return th, al.astype(bool)


def _cuda_launch(variant: Variant, args: tuple) -> None:
    """Launch ``variant`` on a slice of replicas; slices of C-contiguous (R, ...) arrays stay contiguous."""
    import cupy

    th, X, y, w, nu, two_eta, sig, rids, R, key0, key1, k0, steps, bound, al, ds = args
    if R == 0:
        return
    fn = kernel_function(variant)
    if variant.kind == "thread":
        grid, block = (-(-R // THREAD_BLOCK),), (THREAD_BLOCK,)
    else:
        grid, block = (R,), (variant.threads,)
    fn(
        grid,
        block,
        (th, X, y, w, nu, two_eta, sig, rids, np.int32(R), np.uint32(key0), np.uint32(key1), np.uint64(k0))
        + (np.int32(steps), np.float64(bound), al, ds),
    )
    cupy.cuda.get_current_stream().synchronize()


def kernel_name(m: int, d: int, n: int, dtype: str, fast: bool = False) -> str:
    """The ``kernel`` attribute of a GPU run: 'cupy-thread-exact', 'cupy-block-fast', ..."""
    return f"cupy-{choose_kernel(m, d, n, dtype)}-{'fast' if fast else 'exact'}"
