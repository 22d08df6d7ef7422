"""simbias: label-noise SGD, the sharpness flow on the zero-loss manifold, and the
paper's Theorems 2 and 3 checked numerically."""

__version__ = "0.1.0"
