"""simbias: label-noise SGD, the sharpness flow on the zero-loss manifold, and the
paper's Theorems 2 and 3 checked numerically."""

from ._version import __version__
from .results import open_regime

__all__ = ["__version__", "open_regime"]
