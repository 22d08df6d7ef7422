"""simbias: label-noise SGD, the sharpness flow on the zero-loss manifold, and the
paper's Theorems 2 and 3 checked numerically."""

__version__ = "0.1.0"

from .results import open_regime  # noqa: E402  (after __version__: storage reads it)

__all__ = ["__version__", "open_regime"]
