"""Array-module selection: NumPy everywhere, CuPy when a GPU is usable."""

from __future__ import annotations

import logging
from types import ModuleType

import numpy as np

log = logging.getLogger(__name__)


def cupy_usable() -> tuple[bool, str]:
    """Whether CuPy imports and ``cupy.cuda.is_available()`` (a usable CUDA device), with the reason if not.

    Without a GPU ``is_available()`` returns False cleanly, where ``getDeviceCount()`` raises.
    """
    try:
        import cupy
    except Exception as exc:  # ImportError, a broken CUDA install, ...
        return False, f"CuPy not importable ({type(exc).__name__}: {exc}); install the gpu extra"
    try:
        ok = bool(cupy.cuda.is_available())
    except Exception as exc:  # pragma: no cover - is_available is documented not to raise
        return False, f"{type(exc).__name__}: {exc}"
    return ok, ("ok" if ok else "CuPy sees no usable CUDA device")


def get_backend(name: str) -> tuple[ModuleType, str]:
    """Return ``(xp, resolved_name)`` for ``auto`` | ``numpy`` | ``cupy``."""
    if name == "numpy":
        return np, "numpy"
    if name in ("cupy", "auto"):
        ok, why = cupy_usable()
        if ok:
            import cupy

            log.info("backend %s: using cupy (CUDA kernels, simbias.gpu)", name)
            return cupy, "cupy"
        if name == "cupy":
            raise RuntimeError(f"backend 'cupy' requested but no usable GPU ({why})")
        log.info("backend auto: no usable GPU (%s), using numpy (the CPU fast path)", why)
        return np, "numpy"
    raise ValueError(f"unknown backend {name!r} (auto | numpy | cupy)")


def to_numpy(a) -> np.ndarray:
    """Bring an array back to host memory."""
    return a.get() if hasattr(a, "get") else np.asarray(a)
