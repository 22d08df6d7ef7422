"""Every CUDA kernel variant compiled by NVRTC from NVIDIA's pip wheels, without a GPU.

For sm_80 (A100) and sm_90 (H100), float32 and float64, each kernel at the sizes it is
chosen for (simbias.gpu.choose_kernel): ptxas (``--ptxas-options=-v``) must report no
register spills. Exact mode must hold no fused multiply–add, so the GPU rounds like the
CPU. These tests need only the ``test`` extra (nvidia-cuda-nvrtc-cu12, cuda-bindings).
"""

import re

import pytest

from simbias import gpu
from simbias.cuda_build import Variant, compile_nvrtc

# the sizes each variant claims: the thread kernel fig1a, the block kernel fig1b and a
# model at the edge of its budget (d + n = 48; simbias.gpu.BLOCK_MAX_VALUES)
CLAIMS = {
    "thread": [(10, 3, 3)],
    "block": [(30, 10, 15), (64, 24, 24)],
}
CASES = [(kind, size) for kind, sizes in CLAIMS.items() for size in sizes]


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind, size", CASES)
def test_nvrtc_compiles_without_spills(kind, size, dtype, arch):
    assert gpu.choose_kernel(*size, dtype) == kind  # the variant runs at this size
    out = compile_nvrtc(Variant(kind, dtype, *size), arch)
    res = out.resources()
    assert res["spill_stores"] == 0 and res["spill_loads"] == 0, (kind, size, dtype, arch, res, out.log)
    assert 0 < res["registers"] <= 255
    assert len(out.cubin) > 1000


def test_nvrtc_exact_mode_has_no_fused_multiply_add():
    """-fmad=false: no fma instruction in the PTX; fast mode does use them (the test can fail)."""
    exact = compile_nvrtc(Variant("thread", "float64", 10, 3, 3), "sm_90")
    fast = compile_nvrtc(Variant("thread", "float64", 10, 3, 3, fast=True), "sm_90")
    assert not re.search(r"\bfma\.", exact.ptx)
    assert re.search(r"\bfma\.rn\.f64", fast.ptx)


def test_nvrtc_reports_spills_when_a_variant_is_too_large():
    """The spill check can fail: the thread kernel past its register budget spills."""
    assert gpu.choose_kernel(16, 6, 6, "float64") == "block"
    res = compile_nvrtc(Variant("thread", "float64", 16, 6, 6), "sm_90").resources()
    assert res["spill_stores"] > 0


def test_nvrtc_compile_error_is_reported(monkeypatch):
    """A kernel that does not compile raises with NVRTC's log (not a silent empty module)."""
    from simbias import cuda_build

    monkeypatch.setattr(cuda_build, "source", lambda: 'extern "C" __global__ void k() { undefined_name; }')
    with pytest.raises(RuntimeError, match="undefined_name"):
        compile_nvrtc(Variant("thread", "float64", 10, 3, 3), "sm_90")
