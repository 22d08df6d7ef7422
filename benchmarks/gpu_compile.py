#!/usr/bin/env python
"""Registers and spills of every CUDA kernel variant, compiled by NVRTC without a GPU.

    benchmarks/gpu_compile.py            # markdown table: kernel, dtype, size, arch, registers, spills
    benchmarks/gpu_compile.py 64,24,24   # only the rows of that size

Needs the ``test`` extra (nvidia-cuda-nvrtc-cu12, cuda-bindings). The sizes are the ones
each variant is chosen for (``simbias.gpu.choose_kernel``), plus the thread kernel's first
size past its budget, to show why the block kernel takes over, and the block kernel at the
benchmark's large size, where it spills.
"""

from __future__ import annotations

import sys
import time

from simbias import gpu
from simbias.cuda_build import Variant, compile_nvrtc

ROWS = [
    ("thread", (10, 3, 3)),
    ("thread", (16, 6, 6)),
    ("block", (30, 10, 15)),
    ("block", (64, 24, 24)),
    ("block", (256, 64, 32)),
]


def main(argv: list[str]) -> int:
    only = tuple(int(v) for v in argv[0].split(",")) if argv else None
    print(
        "| kernel | dtype | (m, d, n) | chosen at this size | arch | registers | spill stores / loads (bytes) | compile s |"
    )
    print("|---|---|---|---|---|---:|---:|---:|")
    for kind, size in ROWS:
        if only and size != only:
            continue
        for dtype in ("float64", "float32"):
            for arch in ("sm_80", "sm_90"):
                t0 = time.perf_counter()
                res = compile_nvrtc(Variant(kind, dtype, *size), arch).resources()
                chosen = "yes" if gpu.choose_kernel(*size, dtype) == kind else "no"
                print(
                    f"| {kind} | {dtype} | {size} | {chosen} | {arch} | {res['registers']} | "
                    f"{res['spill_stores']} / {res['spill_loads']} | {time.perf_counter() - t0:.1f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
