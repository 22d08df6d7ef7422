#!/usr/bin/env python
"""Label-noise SGD throughput: replica-steps per second, one JSON line per configuration.

    benchmarks/sgd_throughput.py                      # the whole table (a few minutes)
    benchmarks/sgd_throughput.py --backend numba --replicas 64 --steps 20000 \\
        --m 10 --d 3 --n 3 --dtype float64            # exactly one configuration

Every flag restricts the table; given all of them, one configuration runs and one
line is printed. Backends:

- ``numpy``: the reference, ``label_noise_sgd(..., cpu_kernel="numpy")``'s step loop
  (the NumPy segment function ``simbias.sgd.advance``, batched over replicas);
- ``numba``: the CPU fast path, ``label_noise_sgd(..., cpu_kernel="numba")``'s step loop
  (``simbias.kernels_cpu.advance``, the label noise drawn inside the kernel);
- ``numba-ref``: a plain numba loop of the same math written here (parallel over
  replicas, label noise drawn inside the loop by numba's generator);
- ``jax``: plain JAX, one replica's step ``vmap``-ed over replicas inside a ``lax.scan``
  over steps, ``jit``-compiled (CPU or GPU, whichever JAX has; skipped when jax does not import);
- ``torch``: a PyTorch eager loop, one batched step per Python iteration (GPU when
  ``torch.cuda.is_available()``, else CPU; skipped when torch does not import);
- ``cupy`` and ``cupy-fast``: the CUDA kernels (``simbias.gpu.advance``, exact and fast
  mode) on device arrays, one launch per timed run (an error line without a usable GPU).

All run θ ← θ − 2η Jᵀ(f − y + ζ), ζ ~ N(0, σ²), for φ(z) = z³ + νz, and freeze a
replica whose loss exceeds 1e6. ``numpy`` and ``numba`` run label_noise_sgd's loop as it
is, records aside: 2048-step segments of the segment function (noise included).
Compile time is excluded: each backend is compiled (and run once) before timing. The
step count is chosen per configuration so a timed run lasts about ``--seconds`` (unless
``--steps`` is given); the best of ``--repeat`` runs is reported, since the machine may
be shared.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

SIZES = {"fig1a": (10, 3, 3), "fig1b": (30, 10, 15), "large": (256, 64, 32)}
# (eta, sigma, label range) per size: fig1a and fig1b as in config.yaml; large: a stable η
PARAMS = {(10, 3, 3): (0.05, 0.03, 1.0), (30, 10, 15): (0.1, 0.2, 0.3), (256, 64, 32): (0.005, 0.1, 0.3)}
REPLICAS = (1, 64, 1024, 16384)
BACKENDS = ("numpy", "numba", "numba-ref", "jax", "torch", "cupy", "cupy-fast")
NU, P, LOSS_BOUND = 0.1, 3, 1e6
SEGMENT = 2048  # label_noise_sgd's default chunk


def problem(m: int, d: int, n: int, R: int, dtype: str, seed: int = 0):
    """Unit-norm Uniform[0, 1] data, Uniform labels, w = 1, θ0 ~ N(0, 0.1²), and (η, σ)."""
    eta, sigma, high = PARAMS.get((m, d, n), (min(0.1, 0.5 / (m * NU**2 * n)), 0.1, 0.3))
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = rng.uniform(0, high, n)
    w = np.ones(m)
    theta0 = 0.1 * rng.standard_normal((R, m, d))
    return X, y, w, theta0, eta, sigma


def ensemble(xp, m, d, n, R, dtype):
    """The benchmark problem as a segment function takes it, on array module ``xp``:
    (act, eta, sigma, (X, y, w), replica ids, diverged_step on the host, state dict)."""
    from simbias.activations import OddPower

    X, y, w, theta0, eta, sigma = problem(m, d, n, R, dtype)
    act = OddPower(k=(P - 1) // 2, nu=NU)
    data = tuple(xp.asarray(a, dtype=dtype) for a in (X, y, w))
    state = {"theta": xp.asarray(theta0, dtype=dtype), "alive": xp.ones(R, dtype=bool), "k": 0}
    return act, eta, sigma, data, xp.arange(R), np.full(R, -1, dtype=np.int64), state


# -- backends: each returns run(steps) -> number of replicas still alive -------------


def runner_sgd(kernel: str, m, d, n, R, dtype):
    """label_noise_sgd's step loop without its records: 2048-step segments of the segment function.

    The same per-segment work as ``simbias.sgd.label_noise_sgd`` (``select_advance(...,
    cpu_kernel=kernel)``, noise drawn inside it); the records (SVDs of every replica, a
    fixed cost per record) are left out as in the other backends.
    """
    from simbias import sgd

    act, eta, sigma, (Xd, yd, wd), rid, diverged_step, state = ensemble(np, m, d, n, R, dtype)
    seg, name = sgd.select_advance(np, act, dtype, kernel)
    assert name == kernel, (name, kernel)

    def run(steps: int) -> int:
        theta, alive, k = state["theta"], state["alive"], state["k"]
        end = k + steps
        while k < end:
            c = min(SEGMENT, end - k)
            theta, alive = seg(
                np, act, theta, Xd, yd, wd, eta, sigma, 1, rid, k, c, alive, LOSS_BOUND, diverged_step
            )
            k += c
        state.update(theta=theta, alive=alive, k=k)
        return int(alive.sum())

    return run


def runner_cupy(m, d, n, R, dtype, fast: bool):
    """simbias.gpu.advance on device arrays: the whole timed run is one kernel launch."""
    import cupy as cp

    from simbias import gpu
    from simbias.backend import cupy_usable

    ok, why = cupy_usable()
    if not ok:
        raise RuntimeError(f"no usable GPU ({why})")
    act, eta, sigma, (Xd, yd, wd), rid, ds, state = ensemble(cp, m, d, n, R, dtype)

    def run(steps: int) -> int:
        th, al, k = state["theta"], state["alive"], state["k"]
        th, al = gpu.advance(
            cp, act, th, Xd, yd, wd, eta, sigma, 1, rid, k, steps, al, LOSS_BOUND, ds, fast=fast
        )
        cp.cuda.get_current_stream().synchronize()
        state.update(theta=th, alive=al, k=k + steps)
        return int(al.sum())

    return run


def runner_torch(m, d, n, R, dtype):
    """A PyTorch eager loop: one batched step per Python iteration (GPU if torch sees one)."""
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    tdt = getattr(torch, dtype)
    X, y, w, theta0, eta, sigma = problem(m, d, n, R, dtype)
    Xt, yt, wt = (torch.as_tensor(a, dtype=tdt, device=dev) for a in (X, y, w))
    state = {
        "th": torch.as_tensor(theta0, dtype=tdt, device=dev),
        "alive": torch.ones(R, dtype=torch.bool, device=dev),
    }
    gen = torch.Generator(device=dev).manual_seed(1)

    def run(steps: int) -> int:
        th, alive = state["th"], state["alive"]
        for _ in range(steps):
            Z = torch.einsum("rjk,ik->rji", th, Xt)
            res = torch.einsum("j,rji->ri", wt, Z**P + NU * Z) - yt
            alive = alive & ((res * res).sum(-1) <= LOSS_BOUND)
            lam = res + sigma * torch.randn(res.shape, dtype=tdt, device=dev, generator=gen)
            coeff = wt[None, :, None] * (P * Z ** (P - 1) + NU) * lam[:, None, :]
            th = torch.where(
                alive[:, None, None], th - (2 * eta) * torch.einsum("rji,ik->rjk", coeff, Xt), th
            )
        if dev == "cuda":
            torch.cuda.synchronize()
        state.update(th=th, alive=alive)
        return int(alive.sum())

    return run


def _numba_ref_kernel():
    import numba

    @numba.njit(parallel=True, cache=True)
    def numba_ref(theta, X, y, w, two_eta, sigma, nu, zero, loss_bound, steps, alive):
        """Plain loops: z_ji = θ_j·x_i, λ_i = f_i − y_i + σ N(0,1), θ_j −= 2η Σ_i w_j φ'(z_ji) λ_i x_i.

        φ(z) = z³ + νz written out (z * z * z): faster than z**p, so a stricter reference.
        """
        R, m, d = theta.shape
        n = X.shape[0]
        for r in numba.prange(R):
            if not alive[r]:
                continue
            th = theta[r]
            Z = np.empty((m, n), dtype=theta.dtype)
            lam = np.empty(n, dtype=theta.dtype)
            for _ in range(steps):
                loss = zero
                for i in range(n):
                    f = zero
                    for j in range(m):
                        z = zero
                        for k in range(d):
                            z += th[j, k] * X[i, k]
                        Z[j, i] = z
                        f += w[j] * (z * z * z + nu * z)
                    res = f - y[i]
                    loss += res * res
                    lam[i] = res + sigma * np.random.standard_normal()
                if not (loss <= loss_bound):
                    alive[r] = False
                    break
                for j in range(m):
                    for k in range(d):
                        g = zero
                        for i in range(n):
                            z = Z[j, i]
                            g += w[j] * (3 * z * z + nu) * lam[i] * X[i, k]
                        th[j, k] -= two_eta * g

    return numba_ref


def runner_numba_ref(m, d, n, R, dtype):
    kern = _numba_ref_kernel()
    X, y, w, theta0, eta, sigma = problem(m, d, n, R, dtype)
    c = np.dtype(dtype).type
    th = theta0.astype(dtype)
    Xc, yc, wc = (a.astype(dtype) for a in (X, y, w))
    alive = np.ones(R, dtype=np.bool_)

    def run(steps: int) -> int:
        kern(th, Xc, yc, wc, c(2 * eta), c(sigma), c(NU), c(0), LOSS_BOUND, steps, alive)
        return int(alive.sum())

    return run


def runner_jax(m, d, n, R, dtype):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    X, y, w, theta0, eta, sigma = problem(m, d, n, R, dtype)
    Xj, yj, wj = (jnp.asarray(a, dtype=dtype) for a in (X, y, w))
    state = [jnp.asarray(theta0, dtype=dtype), jax.random.PRNGKey(1), jnp.ones(R, dtype=bool)]

    def one(th, key, alive):
        """One replica's step (θ: (m, d)); vmap-ed over replicas below."""
        Z = th @ Xj.T
        res = wj @ (Z**P + NU * Z) - yj
        alive = alive & (jnp.sum(res * res) <= LOSS_BOUND)
        lam = res + sigma * jax.random.normal(key, res.shape, dtype=dtype)
        coeff = wj[:, None] * (P * Z ** (P - 1) + NU) * lam[None, :]
        return jnp.where(alive, th - (2 * eta) * (coeff @ Xj), th), alive

    batched = jax.vmap(one)

    def step(carry, _):
        th, key, alive = carry
        key, sub = jax.random.split(key)
        th, alive = batched(th, jax.random.split(sub, R), alive)
        return (th, key, alive), None

    compiled: dict[int, object] = {}

    def chunk_fn(length: int):
        """lax.scan over `length` steps, compiled ahead of time (no run needed to compile)."""
        if length not in compiled:

            def scan(th, key, alive):
                return jax.lax.scan(step, (th, key, alive), None, length=length)[0]

            compiled[length] = jax.jit(scan).lower(*state).compile()
        return compiled[length]

    def run(steps: int) -> int:
        chunk = min(steps, 256)
        full, rest = divmod(steps, chunk)
        fns = [chunk_fn(chunk)] * full + ([chunk_fn(rest)] if rest else [])
        th, key, alive = state
        for fn in fns:
            th, key, alive = fn(th, key, alive)
        th.block_until_ready()
        state[:] = [th, key, alive]
        return int(alive.sum())

    run.prepare = lambda steps: [chunk_fn(c) for c in {min(steps, 256), steps % min(steps, 256)} if c]
    return run


def make_runner(backend: str, m, d, n, R, dtype):
    if backend == "numpy":
        return runner_sgd("numpy", m, d, n, R, dtype)
    if backend == "numba":
        return runner_sgd("numba", m, d, n, R, dtype)
    if backend == "numba-ref":
        return runner_numba_ref(m, d, n, R, dtype)
    if backend == "jax":
        return runner_jax(m, d, n, R, dtype)
    if backend == "torch":
        return runner_torch(m, d, n, R, dtype)
    if backend in ("cupy", "cupy-fast"):
        return runner_cupy(m, d, n, R, dtype, fast=backend == "cupy-fast")
    raise ValueError(f"unknown backend {backend!r} ({', '.join(BACKENDS)})")


def _timed(run, steps: int) -> tuple[float, int]:
    prep = getattr(run, "prepare", None)
    if prep is not None:
        prep(steps)  # JAX: compile this length outside the timing
    t0 = time.perf_counter()
    alive = run(steps)
    return time.perf_counter() - t0, alive


def measure(backend, m, d, n, R, dtype, steps=None, seconds=1.0, repeat=3) -> dict:
    run = make_runner(backend, m, d, n, R, dtype)
    _timed(run, 2)  # compile and warm up
    if steps is None:  # grow a probe until it takes 5% of the budget, then extrapolate
        probe = 1
        while True:
            t, _ = _timed(run, probe)
            if t >= 0.05 * seconds or probe >= 1 << 22:
                break
            probe *= 8 if t < 0.005 * seconds else 2
        est = probe * seconds / max(t, 1e-9)
        steps = max(1, int(float(f"{est:.2g}")))
    best, alive = math.inf, R
    for _ in range(repeat):
        t, alive = _timed(run, steps)
        best = min(best, t)
    return {
        "backend": backend,
        "dtype": dtype,
        "m": m,
        "d": d,
        "n": n,
        "replicas": R,
        "steps": steps,
        "replica_steps_per_second": float(f"{R * steps / best:.4g}"),
        "seconds": round(best, 4),
        "threads": _threads(backend),
        "alive": alive,
    }


def _threads(backend: str) -> int:
    if backend.startswith("numba"):
        from simbias import kernels_cpu

        return kernels_cpu.threads()
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=BACKENDS)
    ap.add_argument("--replicas", type=int)
    ap.add_argument("--steps", type=int, help="steps per timed run (default: about --seconds of work)")
    ap.add_argument("--m", type=int)
    ap.add_argument("--d", type=int)
    ap.add_argument("--n", type=int)
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("--seconds", type=float, default=1.0, help="target length of one timed run")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per configuration (best is kept)")
    a = ap.parse_args(argv)
    sizes = list(SIZES.values())
    if a.m or a.d or a.n:
        given = (a.m, a.d, a.n)
        sizes = [s for s in sizes if all(g is None or g == v for g, v in zip(given, s, strict=True))]
        if not sizes:
            if None in given:
                ap.error("a size outside the table needs all of --m, --d, --n")
            sizes = [given]
    replicas = [a.replicas] if a.replicas else list(REPLICAS)
    backends = [a.backend] if a.backend else list(BACKENDS)
    for b, module in (("jax", "jax"), ("torch", "torch"), ("cupy", "cupy"), ("cupy-fast", "cupy")):
        if b in backends and not importable(module):
            print(json.dumps({"backend": b, "skipped": f"{module} is not installed"}), flush=True)
            backends.remove(b)
    single = len(sizes) == 1 and len(replicas) == 1 and len(backends) == 1
    for m, d, n in sizes:
        for R in replicas:
            for b in backends:  # side by side: every backend for one configuration in turn
                if single:
                    print(
                        json.dumps(measure(b, m, d, n, R, a.dtype, a.steps, a.seconds, a.repeat)), flush=True
                    )
                    continue
                # each configuration in a fresh process: no thread pools or caches carried over
                cmd = [sys.executable, __file__, "--backend", b, "--replicas", str(R)]
                cmd += ["--m", str(m), "--d", str(d), "--n", str(n), "--dtype", a.dtype]
                cmd += ["--seconds", str(a.seconds), "--repeat", str(a.repeat)]
                cmd += ["--steps", str(a.steps)] if a.steps else []
                out = subprocess.run(cmd, capture_output=True, text=True)
                lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
                if out.returncode or not lines:
                    err = (out.stderr.strip().splitlines() or ["no output"])[-1]
                    lines = [json.dumps({"backend": b, "m": m, "d": d, "n": n, "replicas": R, "error": err})]
                print(lines[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
