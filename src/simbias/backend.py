"""Array-module selection: NumPy everywhere, CuPy when a GPU is usable."""

from __future__ import annotations

import logging
from types import ModuleType

import numpy as np

log = logging.getLogger(__name__)


def cupy_usable() -> tuple[bool, str]:
    """Whether CuPy imports and sees at least one CUDA device, with the reason if not."""
    try:
        import cupy  # noqa: F401

        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # ImportError, CUDARuntimeError, ...
        return False, f"{type(exc).__name__}: {exc}"
    return (n > 0), ("ok" if n > 0 else "no CUDA device")


def get_backend(name: str) -> tuple[ModuleType, str]:
    """Return ``(xp, resolved_name)`` for ``auto`` | ``numpy`` | ``cupy``."""
    if name == "numpy":
        return np, "numpy"
    if name in ("cupy", "auto"):
        ok, why = cupy_usable()
        if ok:
            import cupy

            log.info("backend %s: using cupy", name)
            return cupy, "cupy"
        if name == "cupy":
            raise RuntimeError(f"backend 'cupy' requested but no usable GPU ({why})")
        log.info("backend auto: no usable GPU (%s), using numpy", why)
        return np, "numpy"
    raise ValueError(f"unknown backend {name!r} (auto | numpy | cupy)")


def to_numpy(a) -> np.ndarray:
    """Bring an array back to host memory."""
    return a.get() if hasattr(a, "get") else np.asarray(a)
