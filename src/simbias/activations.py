"""Activations φ and the constants the paper's assumptions use.

The family is φ(z) = z^(2k+1) + νz (paper §3.2, "an example class of activations
that satisfies Assumptions 1 and 3"); k = 1 is the paper's cube-plus-linear.
All functions are elementwise polynomials, so they work on NumPy and CuPy
arrays alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class OddPower:
    """φ(z) = z^p + νz with p = 2k+1 odd, k ≥ 1, ν ≥ 0."""

    k: int = 1
    nu: float = 0.1
    name: str = field(default="odd_power", init=False)

    @property
    def p(self) -> int:
        return 2 * self.k + 1

    def phi(self, z: Any) -> Any:
        return z**self.p + self.nu * z

    def d1(self, z: Any) -> Any:
        """φ'(z)."""
        return self.p * z ** (self.p - 1) + self.nu

    def d2(self, z: Any) -> Any:
        """φ''(z)."""
        return self.p * (self.p - 1) * z ** (self.p - 2)

    def d3(self, z: Any) -> Any:
        """φ'''(z)."""
        return self.p * (self.p - 1) * (self.p - 2) * z ** (self.p - 3)

    # -- scalar inverses used by the theory module (NumPy floats only) --------
    def inverse(self, v: np.ndarray) -> np.ndarray:
        """φ⁻¹(v): φ is strictly increasing (φ' ≥ ν ≥ 0, zero only at isolated points)."""
        v = np.asarray(v, dtype=float)
        out = np.empty_like(v)
        for idx, vi in np.ndenumerate(v):
            out[idx] = _monotone_root(self.phi, vi)
        return out

    def d2_inverse(self, v: np.ndarray) -> np.ndarray:
        """(φ'')⁻¹(v) = sign(v) (|v| / (p(p-1)))^(1/(p-2)); φ'' is strictly increasing."""
        v = np.asarray(v, dtype=float)
        return np.sign(v) * (np.abs(v) / (self.p * (self.p - 1))) ** (1.0 / (self.p - 2))

    # -- constants of Assumptions 1 and 3 --------------------------------------
    @property
    def rho1(self) -> float:
        """ϱ1 = inf φ' = ν (attained at z = 0)."""
        return float(self.nu)

    @property
    def rho2(self) -> float:
        """ϱ2 = inf φ''' : 6 for k = 1, 0 for k ≥ 2 (φ''' ∝ z^(2k-2) vanishes at 0)."""
        return float(self.p * (self.p - 1) * (self.p - 2)) if self.k == 1 else 0.0

    @property
    def beta(self) -> float:
        """Largest β with β φ'' ≤ φ'² φ''' for all z (Assumption 3).

        Only z > 0 constrains β (φ'' < 0 for z < 0). For p = 2k+1 the ratio
        g(z) = (p z^(p-1) + ν)² (p-2) / z is minimised at z^(p-1) = ν / (p(2p-3)),
        giving the exact constant; the paper's min{1/((2k+1)²(2k-1)), ν²} is a
        smaller (valid) lower bound, see :attr:`beta_paper`.
        """
        if self.nu == 0:
            return 0.0
        p, nu = self.p, self.nu
        z = (nu / (p * (2 * p - 3))) ** (1.0 / (p - 1))
        return float((p * z ** (p - 1) + nu) ** 2 * (p - 2) / z)

    @property
    def beta_paper(self) -> float:
        """The paper's β = min{1/((2k+1)²(2k-1)), ν²} (§3.2)."""
        return min(1.0 / ((2 * self.k + 1) ** 2 * (2 * self.k - 1)), self.nu**2)

    def describe(self) -> str:
        nu = f" + {self.nu:g}z" if self.nu else ""
        return f"z^{self.p}{nu}"


def _monotone_root(fn, target: float) -> float:
    """Root of fn(z) = target for strictly increasing, unbounded fn (bracket + brentq)."""
    from scipy.optimize import brentq

    lo, hi = -1.0, 1.0
    while fn(lo) > target:
        lo *= 2
    while fn(hi) < target:
        hi *= 2
    return float(brentq(lambda z: fn(z) - target, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps))


def make_activation(spec: dict) -> OddPower:
    """Build an activation from its config entry ``{name: ..., k: ..., nu: ...}``."""
    name = spec.get("name", "cubic")
    if name == "cubic":
        return OddPower(k=1, nu=float(spec.get("nu", 0.1)))
    if name == "odd_power":
        return OddPower(k=int(spec.get("k", 1)), nu=float(spec.get("nu", 0.1)))
    raise ValueError(f"unknown activation {name!r} (known: cubic, odd_power)")


def check_beta(act: OddPower, beta: float, zmax: float = 10.0, num: int = 200001) -> bool:
    """Numerically confirm β φ'' ≤ φ'² φ''' on a grid (used by the tests)."""
    z = np.linspace(-zmax, zmax, num)
    return bool(np.all(beta * act.d2(z) <= act.d1(z) ** 2 * act.d3(z) * (1 + 1e-12) + 1e-300))


__all__ = ["OddPower", "make_activation", "check_beta"]
