"""``python -m simbias.gpu_check --out gpu_report.json``: prove the GPU backend on the GPU at hand.

Needs only this package, NumPy and CuPy (no Snakemake, no netCDF4). It runs

- the checks: the exact-mode kernels against the NumPy reference (thread kernel: bit for
  bit, float64 and float32, 2000 noisy steps with diverging replicas; block kernel: within
  1e-12 of max |θ| in float64, it sums f over neurons in another order), fast mode within
  1e-10 of max |θ|, re-batched replicas and steps bit for bit, an out-of-memory split
  (simulated) bit for bit, and ``label_noise_sgd``'s records (θ and the diagnostics computed
  from it) with CuPy equal to NumPy's bit for bit;
- the benchmark table: replica-steps per second of the CuPy kernels, exact and fast, float32
  and float64, at the fig1a, fig1b and large sizes with up to 2²⁰ replicas;

prints a verdict and writes everything as JSON. Exit status: 0 all checks passed, 1 a check
failed, 2 no usable GPU (nothing run).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable

import numpy as np

from . import gpu, sgd
from .activations import OddPower

ACT = OddPower(k=1, nu=0.1)
# (m, d, n, eta, sigma, label high, blow-up factor of a replica that diverges within a few steps)
SIZES = {
    "fig1a": (10, 3, 3, 0.05, 0.03, 1.0, 6.0),
    "fig1b": (30, 10, 15, 0.02, 0.2, 0.3, 4.0),
    "large": (256, 64, 32, 0.005, 0.1, 0.3, 0.0),
}
FAST_RTOL = 1e-10  # fast mode (fused multiply-adds, CUDA's log/sincospi) after 2000 steps
BLOCK_RTOL = 1e-12  # block kernel (tree-summed f) after 2000 steps, float64
TARGET_FIG1A_F32 = 1e10  # replica-steps/s, float32, fig1a, >= 65536 replicas


def problem(size: str, R: int, dtype: str, seed: int = 3):
    """Unit-norm Uniform[0, 1] data, labels, weights, θ0 ~ N(0, 0.1²) with two diverging replicas."""
    m, d, n, eta, sigma, high, blow = SIZES[size]
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y, w = rng.uniform(0, high, n), rng.uniform(0.5, 1.5, m)
    theta0 = 0.1 * rng.standard_normal((R, m, d))
    if blow and R > 3:
        theta0[2] *= blow  # diverges after a few steps
        theta0[R - 1] *= 1e30  # overflows before the first step
    return tuple(a.astype(dtype) for a in (X, y, w, theta0)) + (eta, sigma)


def run(fn: Callable, xp, theta0, X, y, w, eta, sigma, replicas, k0: int, cuts, **kw):
    """Segments of ``fn`` (sgd.advance's signature) ending at ``cuts``; host (θ, alive, diverged_step)."""
    R = theta0.shape[0]
    th = xp.asarray(theta0)
    Xd, yd, wd = (xp.asarray(a) for a in (X, y, w))
    alive, ds, k = xp.ones(R, dtype=bool), np.full(R, -1, dtype=np.int64), k0
    for end in cuts:
        th, alive = fn(xp, ACT, th, Xd, yd, wd, eta, sigma, 5, replicas, k, end - k, alive, 1e6, ds, **kw)
        k = end
    host = lambda a: a.get() if hasattr(a, "get") else np.asarray(a)  # noqa: E731
    return host(th), host(alive), ds


def _same(a, b) -> tuple[bool, str]:
    ok = all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    diff = float(np.nanmax(np.abs(a[0] - b[0]))) if a[0].shape == b[0].shape else float("nan")
    return ok, f"max |Δθ| = {diff:.3g}, diverged steps {sorted(set(a[2].tolist()))[:4]}"


def _close(a, b, rtol: float) -> tuple[bool, str]:
    ok_r = b[1]
    scale = float(np.abs(b[0][ok_r]).max())
    diff = float(np.abs(a[0][ok_r] - b[0][ok_r]).max())
    same_flags = np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])
    return bool(
        diff <= rtol * scale and same_flags
    ), f"max |Δθ| / max |θ| = {diff / scale:.3g} (limit {rtol:g})"


def checks(cp) -> list[dict]:
    """Each check: name, passed, detail."""
    out = []

    def record(name: str, fn: Callable[[], tuple[bool, str]]) -> None:
        t0 = time.perf_counter()
        try:
            ok, detail = fn()
        except Exception as exc:  # a crash is a failed check, reported
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        out.append({"name": name, "passed": bool(ok), "detail": detail, "seconds": time.perf_counter() - t0})
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}: {detail}", flush=True)

    R, k0, steps = 64, 1000, 2000
    rid = np.arange(R)
    ref = {}
    for dtype in ("float64", "float32"):
        X, y, w, th0, eta, sigma = problem("fig1a", R, dtype)
        ref[dtype] = run(sgd.advance, np, th0, X, y, w, eta, sigma, rid, k0, [k0 + steps])

        def exact(dtype=dtype, X=X, y=y, w=w, th0=th0, eta=eta, sigma=sigma):
            got = run(
                gpu.advance, cp, th0, X, y, w, eta, sigma, cp.asarray(rid), k0, [k0 + steps], kind="thread"
            )
            return _same(got, ref[dtype])

        record(f"exact thread kernel = NumPy reference, bit for bit (fig1a, {dtype}, {steps} steps)", exact)
    X, y, w, th0, eta, sigma = problem("fig1a", R, "float64")

    def fast():
        got = run(gpu.advance, cp, th0, X, y, w, eta, sigma, cp.asarray(rid), k0, [k0 + steps], fast=True)
        return _close(got, ref["float64"], FAST_RTOL)

    record(f"fast mode within {FAST_RTOL:g} of the reference (fig1a, float64)", fast)

    def rebatch():
        sub = np.array([2, 9, 30, R - 1, 0])
        got = run(
            gpu.advance,
            cp,
            th0[sub],
            X,
            y,
            w,
            eta,
            sigma,
            cp.asarray(sub),
            k0,
            [k0 + 3, k0 + 999, k0 + steps],
        )
        full = ref["float64"]
        return _same(got, tuple(a[sub] for a in full))

    record("re-batched replicas and steps, bit for bit", rebatch)

    def oom():
        real = gpu._cuda_launch
        calls = []

        def launch(variant, args):
            if args[8] > R // 4:
                raise cp.cuda.memory.OutOfMemoryError(1 << 40, 0, 0)
            calls.append(args[8])
            real(variant, args)

        got = run(gpu.advance, cp, th0, X, y, w, eta, sigma, cp.asarray(rid), k0, [k0 + steps], launch=launch)
        ok, detail = _same(got, ref["float64"])
        return ok and len(calls) >= 4, f"{len(calls)} chunks; {detail}"

    record("out of memory split into chunks, bit for bit", oom)
    Rb = 16
    Xb, yb, wb, thb, etab, sigmab = problem("fig1b", Rb, "float64")
    refb = run(sgd.advance, np, thb, Xb, yb, wb, etab, sigmab, np.arange(Rb), 0, [steps])

    def block():
        got = run(gpu.advance, cp, thb, Xb, yb, wb, etab, sigmab, cp.arange(Rb), 0, [steps], kind="block")
        return _close(got, refb, BLOCK_RTOL)

    record(f"block kernel within {BLOCK_RTOL:g} of the reference (fig1b, float64)", block)

    def records():
        kw = dict(eta=eta, sigma=sigma, steps=steps, record_steps=np.array([0, 1, 10, 999, steps]), seed=5)
        a = sgd.label_noise_sgd(cp, ACT, th0, X, y, w, **kw)
        b = sgd.label_noise_sgd(np, ACT, th0, X, y, w, cpu_kernel="numpy", **kw)
        names = ("theta", "loss", "sharpness", "feature_sv", "weight_sv", "diverged_step")
        bad = [k for k in names if not np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True)]
        return not bad, f"kernel {a.kernel}; differing: {bad or 'none'}"

    record("label_noise_sgd's records (θ, loss, F, singular values) with CuPy = NumPy, bit for bit", records)
    return out


def _rate(cp, size: str, R: int, dtype: str, fast: bool, seconds: float) -> dict:
    """One benchmark point: steps grown ×4 until a run lasts ``seconds``/4 or more."""
    X, y, w, th0, eta, sigma = problem(size, R, dtype, seed=0)
    state = {"th": cp.asarray(th0), "alive": cp.ones(R, dtype=bool)}
    Xd, yd, wd = (cp.asarray(a) for a in (X, y, w))
    rid, ds = cp.arange(R), np.full(R, -1, dtype=np.int64)

    def go(steps: int) -> float:
        t0 = time.perf_counter()
        state["th"], state["alive"] = gpu.advance(
            cp, ACT, state["th"], Xd, yd, wd, eta, sigma, 5, rid, 0, steps, state["alive"], 1e6, ds, fast=fast
        )
        cp.cuda.get_current_stream().synchronize()
        return time.perf_counter() - t0

    go(2)  # compile and load the module
    steps, t = 16, go(16)
    while t < seconds / 4 and steps < 1 << 24:
        steps *= 4
        t = go(steps)
    kernel = gpu.kernel_name(*th0.shape[1:], X.shape[0], dtype, fast)
    return {"size": size, "replicas": R, "dtype": dtype, "kernel": kernel, "steps": steps, "seconds": t,
            "replica_steps_per_s": steps * R / t}  # fmt: skip


def benchmark(cp, seconds: float = 1.0, max_replicas: int = 1 << 20) -> list[dict]:
    """Replica-steps per second of the CuPy kernels (state on the GPU, one launch per run)."""
    rows = []
    grid = {"fig1a": (1024, 65536, 1 << 20), "fig1b": (1024, 16384, 131072), "large": (64, 1024, 8192)}
    for size, Rs in grid.items():
        for R in (r for r in Rs if r <= max_replicas):
            for dtype in ("float32", "float64"):
                for fast in (False, True):
                    row = _rate(cp, size, R, dtype, fast, seconds)
                    rows.append(row)
                    print(
                        f"  {size:6s} R={R:8d} {dtype} {row['kernel']:18s} {row['replica_steps_per_s']:10.3e}",
                        flush=True,
                    )
    return rows


def device_info(cp) -> dict:
    dev = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    return {
        "name": props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"]),
        "compute_capability": dev.compute_capability,
        "memory_GiB": round(props["totalGlobalMem"] / 2**30, 1),
        "driver_version": cp.cuda.runtime.driverGetVersion(),
        "runtime_version": cp.cuda.runtime.runtimeGetVersion(),
        "cupy": cp.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simbias.gpu_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="gpu_report.json", help="JSON report (default: gpu_report.json)")
    ap.add_argument("--no-benchmark", action="store_true", help="run the checks only")
    ap.add_argument("--seconds", type=float, default=1.0, help="time per benchmark point (default 1)")
    ap.add_argument("--max-replicas", type=int, default=1 << 20)
    args = ap.parse_args(argv)
    from .backend import cupy_usable

    ok, why = cupy_usable()
    if not ok:
        print(f"simbias.gpu_check: no usable GPU: {why}. Nothing was run (exit 2).", file=sys.stderr)
        print(
            "Run this on a machine with an NVIDIA GPU and the gpu extra installed (pip install -e '.[gpu]').",
            file=sys.stderr,
        )
        return 2
    import cupy as cp

    report = {"device": device_info(cp)}
    print(
        f"GPU: {report['device']['name']} (sm_{''.join(map(str, report['device']['compute_capability']))}), CuPy {cp.__version__}"
    )
    print("checks:")
    report["checks"] = checks(cp)
    if not args.no_benchmark:
        print("benchmark (replica-steps per second):")
        report["benchmark"] = benchmark(cp, args.seconds, args.max_replicas)
        big = [
            r["replica_steps_per_s"]
            for r in report["benchmark"]
            if r["size"] == "fig1a" and r["dtype"] == "float32" and r["replicas"] >= 65536
        ]
        report["target_fig1a_float32_1e10"] = bool(big) and max(big) >= TARGET_FIG1A_F32
    passed = all(c["passed"] for c in report["checks"])
    report["verdict"] = "PASS" if passed else "FAIL"
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=2, default=str)
    n_ok = sum(c["passed"] for c in report["checks"])
    print(f"verdict: {report['verdict']} ({n_ok}/{len(report['checks'])} checks passed); report: {args.out}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
