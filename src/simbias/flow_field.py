"""The flow's vector field in reduced coordinates, its analytic Jacobian, and structured solves.

Reduced coordinates. With the thin SVD X = U S Vᵀ (rank r, V of shape (d, r)), every
θ_j splits into a_j Vᵀ + θ_j^⊥. The sharpness F, the loss and the constraints see θ
only through Z = Θ Xᵀ = A Bᵀ with B = X V (n, r), and every term of the flow
(∇F = C X, Jᵀλ) lies in the row space of X, so θ^⊥ never moves (paper, Lemma 1) and
the flow is the same flow with X replaced by B, on A of shape (m, r).

The vector field (paper eq. 3 plus the stabilising pull back onto M):

    v = −∇F + Jᵀ G⁻¹ (J∇F − κ (f − y)),   G = J Jᵀ = (DᵀD) ∘ K,
    v_j = Σ_i E_ji b_i,   E = D ∘ λ − C,   λ = G⁻¹ h,

with D_ji = w_j φ'(z_ji), C_ji = 2 w_j² φ'(z_ji) φ''(z_ji) ‖b_i‖², K = B Bᵀ and
h_i = Σ_j D_ji (C K)_ji − κ r_i. Its Jacobian is block-diagonal per neuron plus a
coupling of rank ≤ n through λ (derived by differentiating the lines above):

    ∂v_j/∂a_k = δ_jk H_j + U_j G⁻¹ W_k,
    H_j = −Bᵀ diag(β_j) B,          β = C' − λ ∘ D',
    U_j = Bᵀ diag(D_j),             W_k = [diag(α_k) + diag(D_k) K diag(β_k)] B,
    α = −D' ∘ (E K) − κ D,          D' = w φ''(Z),  C' = 2 w² ‖b‖² (φ''² + φ' φ''').

So I − cJ is solved by Woodbury: m blocks of r × r and one n × n system, cost
O(m·r³ + m·r·n² + n³) per factorisation and O(m·r·n) memory, instead of (m·d)³
and (m·d)².
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.integrate import BDF
from scipy.linalg import lu_factor, lu_solve
from scipy.sparse import csc_matrix

from . import flow_kernels, model
from .activations import OddPower


@dataclass(frozen=True)
class Reduction:
    """θ (m, d) ↔ (A (m, r), θ^⊥) with X = U S Vᵀ; ``B = X V`` replaces X in every formula."""

    V: np.ndarray  # (d, r), orthonormal columns spanning the rows of X
    B: np.ndarray  # (n, r) = X V

    @classmethod
    def of(cls, X: np.ndarray) -> Reduction:
        _, s, Vt = np.linalg.svd(X, full_matrices=False)
        r = int(np.sum(s > s[0] * max(X.shape) * np.finfo(float).eps)) if s.size and s[0] > 0 else 0
        V = Vt[:r].T.copy()
        return cls(V, X @ V)

    @property
    def r(self) -> int:
        return self.V.shape[1]

    def reduce(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(A, θ^⊥) with θ = A Vᵀ + θ^⊥."""
        A = theta @ self.V
        return A, theta - A @ self.V.T

    def expand(self, A: np.ndarray, perp: np.ndarray) -> np.ndarray:
        return A @ self.V.T + perp


@dataclass
class Problem:
    """One replica's data in reduced coordinates: B, K = B Bᵀ, ‖b_i‖², y, w, κ.

    ``compiled`` (default: where it applies) evaluates the velocity and ‖∇_M F‖ with
    :mod:`simbias.flow_kernels` for φ = z^p + νz; every other activation uses NumPy.
    """

    act: object
    B: np.ndarray
    y: np.ndarray
    w: np.ndarray
    kappa: float = 1.0
    compiled: bool | None = None

    def __post_init__(self) -> None:
        self.B = np.ascontiguousarray(self.B, dtype=float)
        self.K = self.B @ self.B.T
        self.s = np.einsum("ia,ia->i", self.B, self.B)
        self.w2 = (self.w * self.w)[:, None]
        self.wc = self.w[:, None]
        odd = isinstance(self.act, OddPower)
        if self.compiled is None:
            self.compiled = odd
        elif self.compiled and not odd:
            raise ValueError(f"no compiled flow kernel for {self.act.describe()}")

    def velocity(self, A: np.ndarray) -> np.ndarray:
        """dA/dτ (m, r)."""
        if self.compiled:
            return flow_kernels.velocity(
                A, self.B, self.K, self.s, self.y, self.w, self.act.p, float(self.act.nu), self.kappa
            )
        return field(self, A).v

    def grad_norm(self, A: np.ndarray) -> float:
        """‖∇_M F‖ at A (equal to its value at θ = A Vᵀ + θ^⊥)."""
        if self.compiled:
            return float(
                flow_kernels.grad_norm(A, self.B, self.K, self.s, self.w, self.act.p, float(self.act.nu))
            )
        return float(model.norm(np, model.riemannian_grad(np, self.act, A[None], self.B, self.w))[0])

    def retract(self, A: np.ndarray, tol: float = 1e-13) -> np.ndarray:
        """Newton (Gauss–Newton) retraction of A (m, r) onto M (:func:`simbias.model.newton_retract`),
        compiled where :meth:`velocity` is; a singular Gram matrix falls back to NumPy's
        least-squares step."""
        if self.compiled:
            try:
                return flow_kernels.newton_retract(
                    A, self.B, self.K, self.y, self.w, self.act.p, float(self.act.nu), tol, 50
                )[0]
            except np.linalg.LinAlgError:
                pass
        return model.newton_retract(np, self.act, A[None], self.B, self.y, self.w, tol=tol)[0][0]

    def flat_callbacks(
        self,
    ) -> tuple[Callable[[float, np.ndarray, np.ndarray], None], Callable[[np.ndarray], float]]:
        """(rhs(t, v, out), grad_norm(v)) on flat vectors v (m·r,): :meth:`velocity` written into
        ``out`` and :meth:`grad_norm`, the form an ODE solver calls (CVODE: ~10³ times per
        replica). Compiled, each is one call of :mod:`simbias.flow_kernels` on the problem packed
        into two arrays (numba checks every argument's type at every call); the same bits."""
        if self.compiled:
            P, dims = flow_kernels.pack(
                self.B, self.K, self.s, self.y, self.w, float(self.act.nu), self.kappa
            )
            p, into, flat = self.act.p, flow_kernels.velocity_into, flow_kernels.grad_norm_flat

            def rhs(t, v, out):
                into(v, out, P, dims, p)

            def gnorm(v):
                return flat(v, P, dims, p)

            return rhs, gnorm
        shape = (self.w.size, self.B.shape[1])

        def rhs(t, v, out):
            out[:] = self.velocity(v.reshape(shape)).ravel()

        def gnorm(v):
            return self.grad_norm(v.reshape(shape))

        return rhs, gnorm


@dataclass
class FieldParts:
    """The vector field at one point and the pieces its Jacobian reuses."""

    Z: np.ndarray  # (m, n)
    D: np.ndarray  # w φ'(Z)
    C: np.ndarray  # 2 w² φ' φ'' ‖b‖²
    G: np.ndarray  # (n, n) J Jᵀ
    lam: np.ndarray  # (n,) G⁻¹ h
    E: np.ndarray  # D ∘ λ − C
    v: np.ndarray  # (m, r) the velocity


def field(p: Problem, A: np.ndarray) -> FieldParts:
    """v(A) = −∇F + Jᵀ G⁻¹ (J∇F − κ(f − y)) in reduced coordinates (module docstring)."""
    act, B = p.act, p.B
    Z = A @ B.T
    d1 = act.d1(Z)
    D = p.wc * d1
    C = 2.0 * p.w2 * d1 * act.d2(Z) * p.s
    h = np.einsum("ji,ji->i", D, C @ p.K) - p.kappa * (p.w @ act.phi(Z) - p.y)
    G = (D.T @ D) * p.K
    lam = np.linalg.solve(G, h)
    E = D * lam - C
    return FieldParts(Z, D, C, G, lam, E, E @ B)


class FlowJacobian:
    """∂v/∂A = blockdiag(H_j) + U G⁻¹ W at one point (module docstring), never formed densely."""

    def __init__(self, p: Problem, parts: FieldParts):
        act, B, K = p.act, p.B, p.K
        Z, D, lam = parts.Z, parts.D, parts.lam
        d1, d2, d3 = act.d1(Z), act.d2(Z), act.d3(Z)
        Dp = p.wc * d2
        beta = 2.0 * p.w2 * p.s * (d2 * d2 + d1 * d3) - lam * Dp  # (m, n)
        alpha = -Dp * (parts.E @ K) - p.kappa * D
        m, n = Z.shape
        r = B.shape[1]
        Bt_beta = B.T[None] * beta[:, None, :]  # (m, r, n)
        self.H = -(Bt_beta @ B)  # (m, r, r)
        W = alpha[:, :, None] * B[None] + D[:, :, None] * (K @ (beta[:, :, None] * B[None]))  # (m, n, r)
        self.Wt = np.ascontiguousarray(np.linalg.solve(parts.G, W.transpose(1, 0, 2).reshape(n, m * r)))
        self.U = np.ascontiguousarray(B.T[None] * D[:, None, :])  # (m, r, n)
        self.m, self.r, self.n = m, r, n
        self.compiled = bool(p.compiled)

    def dense(self) -> np.ndarray:
        """The full (m·r, m·r) matrix: for the dense solves of small systems (CVODE) and tests."""
        m, r = self.m, self.r
        J = self.U.reshape(m * r, self.n) @ self.Wt
        idx = np.arange(m)
        J.reshape(m, r, m, r)[idx, :, idx, :] += self.H  # the diagonal blocks H_j
        return J

    def matvec(self, x: np.ndarray) -> np.ndarray:
        X = x.reshape(self.m, self.r)
        coupled = self.U @ (self.Wt @ x)  # (m, r)
        return (np.einsum("jab,jb->ja", self.H, X) + coupled).ravel()

    def factor(self, c: float) -> ShiftedSolve:
        """Factorise I − c·J for the BDF Newton iterations."""
        return ShiftedSolve(self, c, compiled=self.compiled)


class ShiftedSolve:
    """(I − cJ)⁻¹ by Woodbury: A0 = I − c·blockdiag(H), S = I − c·(G⁻¹W) A0⁻¹ U (n × n).

    (A0 − c U G⁻¹W)⁻¹ = A0⁻¹ + c A0⁻¹U S⁻¹ (G⁻¹W) A0⁻¹. ``compiled``: the same
    arithmetic in :mod:`simbias.flow_kernels` (S solved by LAPACK's gesv each time).
    """

    def __init__(self, jac: FlowJacobian, c: float, compiled: bool = True):
        m, r, n = jac.m, jac.r, jac.n
        self.c, self.Wt, self.compiled = c, jac.Wt, compiled
        if compiled:
            self.A0inv, self.A0invU, self.S = flow_kernels.factor(jac.H, jac.U, jac.Wt, c)
            return
        self.A0inv = np.linalg.inv(np.eye(r)[None] - c * jac.H)  # (m, r, r)
        self.A0invU = (self.A0inv @ jac.U).reshape(m * r, n)
        self.S = lu_factor(np.eye(n) - c * (jac.Wt @ self.A0invU), check_finite=False)

    def solve(self, b: np.ndarray) -> np.ndarray:
        if self.compiled:
            return flow_kernels.solve(self.A0inv, self.A0invU, self.Wt, self.S, self.c, b)
        y0 = np.einsum("jab,jb->ja", self.A0inv, b.reshape(self.A0inv.shape[:2])).ravel()
        t = lu_solve(self.S, self.Wt @ y0, check_finite=False)
        return y0 + self.c * (self.A0invU @ t)


class _Identity:
    """Stands for I in SciPy's ``LU = self.lu(self.I - c * J)``: yields (J, c) for our factorisation."""

    def __sub__(self, scaled: _Scaled) -> tuple[FlowJacobian, float]:
        return scaled.jac, scaled.c


@dataclass
class _Scaled:
    jac: FlowJacobian
    c: float


class _JacobianHandle:
    """What SciPy's BDF keeps as ``self.J``: ``c * J`` gives a lazy scaled Jacobian."""

    def __init__(self, jac: FlowJacobian):
        self.jac = jac

    def __rmul__(self, c: float) -> _Scaled:
        return _Scaled(self.jac, float(c))


class StructuredBDF(BDF):
    """SciPy's BDF (variable order 1–5, variable step, the same error control) with the
    Newton systems I − cJ solved by :class:`ShiftedSolve` instead of a dense LU.

    ``jac(t, y)`` must return a :class:`FlowJacobian`. Only the linear algebra is
    replaced: steps, orders, error estimates and Jacobian reuse are SciPy's.
    """

    def __init__(self, fun, t0, y0, t_bound, *, jac, **kw):
        self._structured_jac = jac
        super().__init__(fun, t0, y0, t_bound, jac=jac, **kw)
        # SciPy allocates the differences with np.empty and its first step subtracts row 2
        # unset; garbage that is a signalling NaN raised 'invalid value' warnings now and then.
        # Those rows are overwritten before they are used: zeros change nothing else.
        self.D[2:] = 0.0
        self.J = self.jac(self.t, self.y)

        def lu(A: tuple[FlowJacobian, float]) -> ShiftedSolve:
            self.nlu += 1
            return A[0].factor(A[1])

        self.lu = lu
        self.solve_lu = lambda LU, b: LU.solve(b)
        self.I = _Identity()

    def _validate_jac(self, jac, sparsity):
        def jac_wrapped(t, y):
            self.njev += 1
            return _JacobianHandle(self._structured_jac(t, y))

        # An empty sparse stand-in until __init__ is done: BDF then builds a sparse identity,
        # not a dense (m·r)² one (537 MB at m·r = 8192), and we replace it right after.
        return jac_wrapped, csc_matrix((self.n, self.n))
