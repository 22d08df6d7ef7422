"""Activations φ and the constants the paper's assumptions use.

The theory's family is φ(z) = z^(2k+1) + νz (paper §3.2, "an example class of
activations that satisfies Assumptions 1 and 3"); k = 1 is the paper's
cube-plus-linear. Outside it: z³ + z² + νz (inside Assumption 1 only when
ν > 1/3), tanh and softplus (their third derivative changes sign). Every
activation gives φ and three derivatives elementwise (NumPy ufuncs, so CuPy
arrays work too), ϱ1 = inf φ', ϱ2 = inf φ''', the largest β of Assumption 3,
and ``theorem2_failures()``: why Theorem 2's assumption fails (empty if it holds).
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

    def theorem2_failures(self) -> list[str]:
        """φ' ≥ 0 and φ''' ≥ 0 vanish only at z = 0: Theorem 2 holds (Lemma 18 covers ν = 0)."""
        return []


@dataclass(frozen=True)
class CubicQuadratic:
    """φ(z) = z³ + z² + νz: φ' = 3z² + 2z + ν ≥ ν − 1/3, φ''' = 6.

    Assumption 1 holds exactly when ν > 1/3; for smaller ν, φ' changes sign.
    """

    nu: float = 0.1
    name: str = field(default="cubic_quadratic", init=False)

    def phi(self, z: Any) -> Any:
        return z**3 + z**2 + self.nu * z

    def d1(self, z: Any) -> Any:
        return 3 * z**2 + 2 * z + self.nu

    def d2(self, z: Any) -> Any:
        return 6 * z + 2

    def d3(self, z: Any) -> Any:
        return 6 + 0 * z

    def inverse(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        return np.vectorize(lambda t: _monotone_root(self.phi, t))(v)

    def d2_inverse(self, v: np.ndarray) -> np.ndarray:
        return (np.asarray(v, dtype=float) - 2.0) / 6.0

    @property
    def rho1(self) -> float:
        return float(self.nu - 1.0 / 3.0)

    @property
    def rho2(self) -> float:
        return 6.0

    @property
    def beta(self) -> float:
        """Largest β with β φ'' ≤ φ'² φ''' (only z > −1/3, where φ'' > 0, constrains it)."""
        if self.rho1 <= 0:
            return 0.0
        from scipy.optimize import minimize_scalar

        res = minimize_scalar(
            lambda z: 6 * self.d1(z) ** 2 / self.d2(z),
            bounds=(-1 / 3 + 1e-12, 1e3),
            method="bounded",
            options={"xatol": 1e-12},
        )
        return float(res.fun)

    beta_paper = float("nan")

    def describe(self) -> str:
        return f"z^3 + z^2 + {self.nu:g}z"

    def theorem2_failures(self) -> list[str]:
        if self.nu > 1 / 3:
            return []
        return [f"φ' = 3z² + 2z + ν has minimum ν − 1/3 = {self.nu - 1 / 3:.3g} ≤ 0 (Assumption 1 fails)"]


@dataclass(frozen=True)
class Tanh:
    """φ = tanh: φ' = 1 − t², φ'' = −2t(1 − t²), φ''' = −2(1 − t²)(1 − 3t²), t = tanh z."""

    name: str = field(default="tanh", init=False)

    def phi(self, z: Any) -> Any:
        return np.tanh(z)

    def d1(self, z: Any) -> Any:
        t = np.tanh(z)
        return 1 - t * t

    def d2(self, z: Any) -> Any:
        t = np.tanh(z)
        return -2 * t * (1 - t * t)

    def d3(self, z: Any) -> Any:
        t = np.tanh(z)
        return -2 * (1 - t * t) * (1 - 3 * t * t)

    rho1 = 0.0  # inf φ' = 0 as |z| → ∞
    rho2 = -2.0  # inf φ''' = φ'''(0)
    beta = 0.0
    beta_paper = float("nan")

    def describe(self) -> str:
        return "tanh(z)"

    def theorem2_failures(self) -> list[str]:
        return ["tanh: φ''' changes sign and inf φ' = 0 (Assumption 1 fails)"]


@dataclass(frozen=True)
class Softplus:
    """φ = log(1 + eᶻ): φ' = s, φ'' = s(1 − s), φ''' = s(1 − s)(1 − 2s), s = sigmoid(z)."""

    name: str = field(default="softplus", init=False)

    def phi(self, z: Any) -> Any:
        return np.logaddexp(0.0, z)

    def d1(self, z: Any) -> Any:
        return 0.5 * (1 + np.tanh(0.5 * z))

    def d2(self, z: Any) -> Any:
        s = self.d1(z)
        return s * (1 - s)

    def d3(self, z: Any) -> Any:
        s = self.d1(z)
        return s * (1 - s) * (1 - 2 * s)

    rho1 = 0.0  # inf φ' = 0 as z → −∞
    rho2 = float(-1 / (6 * np.sqrt(3)))  # inf φ''' , at s = 1/2 + 1/(2√3)
    beta = 0.0
    beta_paper = float("nan")

    def describe(self) -> str:
        return "softplus(z)"

    def theorem2_failures(self) -> list[str]:
        return ["softplus: φ''' changes sign and inf φ' = 0 (Assumption 1 fails)"]


def _monotone_root(fn, target: float) -> float:
    """Root of fn(z) = target for strictly increasing, unbounded fn (bracket + brentq)."""
    from scipy.optimize import brentq

    lo, hi = -1.0, 1.0
    while fn(lo) > target:
        lo *= 2
    while fn(hi) < target:
        hi *= 2
    return float(brentq(lambda z: fn(z) - target, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps))


ACTIVATIONS = ("cubic", "odd_power", "cubic_quadratic", "tanh", "softplus")


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def pretty(text: str) -> str:
    """A plain-text formula in Unicode, as figures and the report show it: z^3 + 0.1z -> z³ + 0.1z."""
    import re

    return re.sub(r"\^(-?\d+)", lambda m: m.group(1).translate(_SUPERSCRIPT), text)


def make_activation(spec: dict):
    """Build an activation from its config entry ``{name: ..., k: ..., nu: ...}``."""
    name = spec.get("name", "cubic")
    nu = float(spec.get("nu", 0.1))
    if name == "cubic":
        return OddPower(k=1, nu=nu)
    if name == "odd_power":
        return OddPower(k=int(spec.get("k", 1)), nu=nu)
    if name == "cubic_quadratic":
        return CubicQuadratic(nu=nu)
    if name == "tanh":
        return Tanh()
    if name == "softplus":
        return Softplus()
    raise ValueError(f"unknown activation {name!r} (known: {', '.join(ACTIVATIONS)})")


def check_beta(act, beta: float, zmax: float = 10.0, num: int = 200001) -> bool:
    """Numerically confirm β φ'' ≤ φ'² φ''' on a grid (used by the tests)."""
    z = np.linspace(-zmax, zmax, num)
    return bool(np.all(beta * act.d2(z) <= act.d1(z) ** 2 * act.d3(z) * (1 + 1e-12) + 1e-300))


__all__ = [
    "ACTIVATIONS",
    "CubicQuadratic",
    "OddPower",
    "Softplus",
    "Tanh",
    "check_beta",
    "make_activation",
    "pretty",
]
