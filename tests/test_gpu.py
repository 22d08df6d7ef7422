"""On a GPU: the CuPy kernels against the NumPy reference (python -m simbias.gpu_check's checks).

Marked ``gpu``; skipped where CuPy sees no usable GPU (CI). Without a GPU, the command itself
must stop with exit status 2 and say why (tested here too, and that test always runs).
"""

import subprocess
import sys

import pytest

from simbias.backend import cupy_usable

GPU, WHY = cupy_usable()


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason=f"no usable GPU ({WHY})")
def test_gpu_checks_pass():
    import cupy

    from simbias import gpu_check

    results = gpu_check.checks(cupy)
    assert len(results) == 7
    failed = [r for r in results if not r["passed"]]
    assert not failed, failed


@pytest.mark.skipif(GPU, reason="a GPU is usable here")
def test_gpu_check_without_gpu_exits_2_with_a_clear_message(tmp_path):
    out = tmp_path / "gpu_report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "simbias.gpu_check", "--out", str(out)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "no usable GPU" in proc.stderr and "Nothing was run" in proc.stderr
    assert not out.exists()
