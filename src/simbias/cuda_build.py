"""Build the CUDA C++ of ``simbias/cuda/``: sources, compile options, and two builds without a GPU.

The kernels (``kernels.cu``) and the per-step math they share with the CPU
(``sgd_step.cuh``) live in the package. This module assembles one translation unit
per variant (kernel, dtype, sizes, activation power, exact or fast) with the sizes
as compile-time constants, and builds it

- with NVRTC (:func:`compile_nvrtc`: PTX/CUBIN and ptxas's register and spill
  report, from the ``nvidia-cuda-nvrtc-cu12`` wheel through ``cuda-bindings``; no GPU
  needed), and
- with g++ (:func:`build_cpu_shim`: the header's functions as a shared library,
  ``cpu_shim.cpp``, called through ctypes), so tests run the GPU's lines on the CPU.

:mod:`simbias.gpu` compiles the same sources with CuPy at run time. Only NumPy and
the standard library are imported here.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CUDA_DIR = Path(__file__).parent / "cuda"
KERNELS = {"thread": "sgd_thread_per_replica", "block": "sgd_block_per_replica"}
CTYPES = {"float64": "double", "float32": "float"}


@dataclass(frozen=True)
class Variant:
    """One compiled kernel: ``kind`` 'thread' or 'block', dtype, sizes, φ's half power, exact or fast."""

    kind: str
    dtype: str
    m: int
    d: int
    n: int
    half: int = 1
    fast: bool = False

    @property
    def threads(self) -> int:
        """Block size: a multiple of 32 (≥ m for the block kernel; 128 replicas a block for the thread kernel)."""
        return 32 * -(-self.m // 32) if self.kind == "block" else 128

    @property
    def name(self) -> str:
        return KERNELS[self.kind]

    def defines(self) -> list[str]:
        out = [
            f"-DSB_T={CTYPES[self.dtype]}",
            f"-DSB_M={self.m}",
            f"-DSB_D={self.d}",
            f"-DSB_N={self.n}",
            f"-DSB_HALF={self.half}",
            f"-DSB_THREADS={self.threads}",
            f"-DSB_KERNEL_{self.kind.upper()}",
        ]
        return out + (["-DSB_FAST"] if self.fast else [])

    def options(self) -> list[str]:
        """NVRTC options: exact mode forbids fused multiply–adds; fast mode allows them."""
        return ["-std=c++17", f"-fmad={'true' if self.fast else 'false'}", *self.defines()]


def source(file: str = "kernels.cu") -> str:
    """``file`` of simbias/cuda with ``#include "sgd_step.cuh"`` inlined (one translation unit)."""
    header = (CUDA_DIR / "sgd_step.cuh").read_text()
    return (CUDA_DIR / file).read_text().replace('#include "sgd_step.cuh"', header)


# -- NVRTC, no GPU needed -------------------------------------------------------------


@dataclass
class Compiled:
    """What NVRTC produced for one variant and architecture."""

    variant: Variant
    arch: str
    cubin: bytes
    ptx: str
    log: str

    def resources(self, kernel: str | None = None) -> dict[str, int]:
        """Registers, spill stores/loads and stack frame bytes of ``kernel`` (default: the variant's)."""
        name = kernel or self.variant.name
        block = self.log.split(f"Function properties for {name}")
        if len(block) < 2:
            raise ValueError(f"no ptxas report for {name} in the log:\n{self.log}")
        text = block[1].split("Compile time")[0]
        num = lambda pat: int(re.search(pat, text).group(1))  # noqa: E731
        return {
            "registers": num(r"Used (\d+) registers"),
            "spill_stores": num(r"(\d+) bytes spill stores"),
            "spill_loads": num(r"(\d+) bytes spill loads"),
            "stack_bytes": num(r"(\d+) bytes stack frame"),
        }


def compile_nvrtc(variant: Variant, arch: str = "sm_90") -> Compiled:
    """Compile ``variant`` to CUBIN for ``arch`` with NVRTC (``cuda-bindings``), with ptxas's report.

    Raises RuntimeError with NVRTC's log when the compile fails.
    """
    from cuda.bindings import nvrtc

    def check(res):
        err = res[0] if isinstance(res, tuple) else res
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise RuntimeError(f"NVRTC: {err}")
        return res[1:] if isinstance(res, tuple) and len(res) > 1 else None

    (prog,) = check(nvrtc.nvrtcCreateProgram(source().encode(), b"kernels.cu", 0, [], []))
    opts = [o.encode() for o in (f"--gpu-architecture={arch}", "--ptxas-options=-v", *variant.options())]
    res = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
    (size,) = check(nvrtc.nvrtcGetProgramLogSize(prog))
    buf = b" " * size
    check(nvrtc.nvrtcGetProgramLog(prog, buf))
    log = buf.decode(errors="replace").rstrip("\x00 ")
    if res[0] != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise RuntimeError(f"NVRTC could not compile {variant} for {arch}:\n{log}")
    (csize,) = check(nvrtc.nvrtcGetCUBINSize(prog))
    cubin = b" " * csize
    check(nvrtc.nvrtcGetCUBIN(prog, cubin))
    (psize,) = check(nvrtc.nvrtcGetPTXSize(prog))
    ptx = b" " * psize
    check(nvrtc.nvrtcGetPTX(prog, ptx))
    nvrtc.nvrtcDestroyProgram(prog)
    return Compiled(variant, arch, cubin, ptx.decode(errors="replace").rstrip("\x00 "), log)


# -- g++: the header on the CPU ---------------------------------------------------------

GXX_FLAGS = [
    "-O2",
    "-std=c++17",
    "-ffp-contract=off",
    "-fno-fast-math",
    "-fPIC",
    "-shared",
    "-Wno-unknown-pragmas",
]


class CpuShim:
    """``cpu_shim.cpp`` built with g++ for one dtype and size: the header's functions via ctypes."""

    def __init__(self, path: Path, variant: Variant):
        self.variant = variant
        self.lib = ctypes.CDLL(str(path))
        self.dtype = np.dtype(variant.dtype)

    @staticmethod
    def _ptr(a: np.ndarray):
        return a.ctypes.data_as(ctypes.c_void_p)

    def philox(self, ctr, key) -> np.ndarray:
        c = np.asarray(ctr, dtype=np.uint32)
        k = np.asarray(key, dtype=np.uint32)
        out = np.zeros(4, dtype=np.uint32)
        self.lib.sb_philox(self._ptr(c), self._ptr(k), self._ptr(out))
        return out

    def normals(self, seed: int, replicas, k0: int, steps: int, n: int) -> np.ndarray:
        from .noise import seed_key

        lo, hi = seed_key(seed)
        rids = np.ascontiguousarray(replicas, dtype=np.int64)
        out = np.empty((steps, len(rids), n))
        f = self.lib.sb_normals
        f.argtypes = [ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64]
        f.argtypes += [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
        f(lo, hi, self._ptr(rids), len(rids), k0, steps, n, self._ptr(out))
        return out

    def advance(
        self, theta, X, y, w, nu, two_eta, sigma, seed, replicas, k0, steps, alive, loss_bound, diverged_step
    ):
        """The thread-per-replica kernel's work on host arrays; returns new (θ, alive), updates diverged_step."""
        from .noise import seed_key

        dt = self.dtype
        th = np.array(theta, dtype=dt, order="C", copy=True)
        Xc, yc, wc = (np.ascontiguousarray(a, dtype=dt) for a in (X, y, w))
        R = th.shape[0]
        te = np.ascontiguousarray(np.broadcast_to(np.asarray(two_eta, dtype=dt), (R,)))
        sg = np.ascontiguousarray(np.broadcast_to(np.asarray(sigma, dtype=np.float64), (R,)))
        rids = np.ascontiguousarray(replicas, dtype=np.int64)
        al = np.ascontiguousarray(alive, dtype=np.uint8).copy()
        ds = np.ascontiguousarray(diverged_step, dtype=np.int64)
        lo, hi = seed_key(seed)
        real = ctypes.c_double if dt == np.float64 else ctypes.c_float
        f = self.lib.sb_advance
        f.argtypes = [ctypes.c_void_p] * 4 + [real] + [ctypes.c_void_p] * 3 + [ctypes.c_int]
        f.argtypes += [ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int, ctypes.c_double]
        f.argtypes += [ctypes.c_void_p, ctypes.c_void_p]
        p = self._ptr
        f(
            p(th),
            p(Xc),
            p(yc),
            p(wc),
            nu,
            p(te),
            p(sg),
            p(rids),
            R,
            lo,
            hi,
            k0,
            steps,
            loss_bound,
            p(al),
            p(ds),
        )
        if ds is not diverged_step:
            diverged_step[...] = ds
        return th, al.astype(bool)

    def launch(self, variant: Variant, args: tuple) -> None:
        """:func:`simbias.gpu.advance`'s launch, in place on host arrays (the thread kernel's work)."""
        th, X, y, w, nu, two_eta, sig, rids, R, key0, key1, k0, steps, bound, al, ds = args
        real = ctypes.c_double if self.dtype == np.float64 else ctypes.c_float
        f = self.lib.sb_advance
        f.argtypes = [ctypes.c_void_p] * 4 + [real] + [ctypes.c_void_p] * 3 + [ctypes.c_int]
        f.argtypes += [ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int, ctypes.c_double]
        f.argtypes += [ctypes.c_void_p, ctypes.c_void_p]
        arrays = (th, X, y, w, two_eta, sig, rids, al, ds)
        if not all(a.flags.c_contiguous for a in arrays):
            raise ValueError("launch needs C-contiguous arrays")
        p = self._ptr
        f(
            p(th),
            p(X),
            p(y),
            p(w),
            nu,
            p(two_eta),
            p(sig),
            p(rids),
            R,
            key0,
            key1,
            k0,
            steps,
            bound,
            p(al),
            p(ds),
        )


_SHIMS: dict[Variant, CpuShim] = {}


def build_cpu_shim(variant: Variant, cache_dir: str | os.PathLike | None = None) -> CpuShim:
    """Compile ``cpu_shim.cpp`` for ``variant``'s dtype and sizes with g++ (cached per source and flags)."""
    if variant in _SHIMS:
        return _SHIMS[variant]
    flags = GXX_FLAGS + [f"-I{CUDA_DIR}"] + variant.defines()
    text = (CUDA_DIR / "cpu_shim.cpp").read_text() + (CUDA_DIR / "sgd_step.cuh").read_text()
    key = hashlib.sha256((text + " ".join(flags[:-1] + variant.defines())).encode()).hexdigest()[:16]
    folder = Path(cache_dir or Path(tempfile.gettempdir()) / f"simbias-cpu-shim-{os.getuid()}")
    folder.mkdir(parents=True, exist_ok=True)
    lib = folder / f"shim-{key}.so"
    if not lib.exists():
        tmp = lib.with_suffix(f".{os.getpid()}.tmp")
        cmd = ["g++", *flags, str(CUDA_DIR / "cpu_shim.cpp"), "-o", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"g++ failed ({' '.join(cmd)}):\n{proc.stderr}")
        os.replace(tmp, lib)
    _SHIMS[variant] = CpuShim(lib, variant)
    return _SHIMS[variant]
