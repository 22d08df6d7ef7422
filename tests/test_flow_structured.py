"""The structured flow integrator: reduced coordinates, analytic Jacobian, Woodbury solves,
the compiled fast path, and agreement with the dense reference integrator."""

import numpy as np
import pytest
from conftest import unit_rows

from simbias import flow, flow_field, flow_kernels, flow_reference, model, sgd, theory
from simbias.activations import CubicQuadratic, OddPower, Softplus, Tanh

ACTS = [OddPower(1, 0.1), OddPower(2, 0.2), OddPower(1, 0.0), CubicQuadratic(0.5), Tanh(), Softplus()]


def problem(rng, m, d, n, act, kappa=1.0, compiled=None):
    X = unit_rows(rng, n, d) * rng.uniform(0.5, 2.0, (n, 1))  # ‖x_i‖ ≠ 1: every factor ‖x_i‖² counts
    y = rng.standard_normal(n)
    w = rng.uniform(0.5, 2.0, m) * np.where(np.arange(m) % 3 == 0, -1, 1)
    theta = 0.5 * rng.standard_normal((m, d))
    red = flow_field.Reduction.of(X)
    A, perp = red.reduce(theta)
    return X, y, w, theta, red, A, flow_field.Problem(act, red.B, y, w, kappa=kappa, compiled=compiled)


@pytest.mark.parametrize("act", ACTS, ids=lambda a: a.describe())
@pytest.mark.parametrize("mdn", [(7, 5, 3), (4, 2, 3)], ids=["n<d", "n>d"])
def test_reduced_field_is_the_flow(act, mdn):
    """In reduced coordinates the velocity is model.flow_velocity, and it never leaves span(X)."""
    rng = np.random.default_rng(1)
    X, y, w, theta, red, A, p = problem(rng, *mdn, act, kappa=0.7, compiled=False)
    full = model.flow_velocity(np, act, theta[None], X, y, w, kappa=0.7)[0]
    v = p.velocity(A)
    np.testing.assert_allclose(v @ red.V.T, full, atol=1e-11 * np.abs(full).max())
    assert np.abs(full - full @ red.V @ red.V.T).max() <= 1e-11 * np.abs(full).max()
    g = model.norm(np, model.riemannian_grad(np, act, theta[None], X, w))[0]
    assert p.grad_norm(A) == pytest.approx(g, rel=1e-10)


@pytest.mark.parametrize("act", ACTS, ids=lambda a: a.describe())
@pytest.mark.parametrize("mdn", [(7, 5, 3), (5, 3, 4)], ids=["n<d", "n>d"])
def test_analytic_jacobian_matches_finite_differences(act, mdn):
    rng = np.random.default_rng(2)
    _, _, _, _, _, A, p = problem(rng, *mdn, act, kappa=1.0, compiled=False)
    jac = flow_field.FlowJacobian(p, flow_field.field(p, A))
    Jd = jac.dense()
    a = A.ravel()
    fd = np.empty_like(Jd)
    for k in range(a.size):  # central differences, error O(h²) ≈ 1e-10 relative
        e = np.zeros_like(a)
        e[k] = 1e-5 * max(1.0, abs(a[k]))
        vp = p.velocity((a + e).reshape(A.shape)).ravel()
        vm = p.velocity((a - e).reshape(A.shape)).ravel()
        fd[:, k] = (vp - vm) / (2 * e[k])
    assert np.abs(Jd - fd).max() <= 1e-6 * np.abs(Jd).max()
    x = rng.standard_normal(a.size)
    np.testing.assert_allclose(jac.matvec(x), Jd @ x, atol=1e-12 * np.abs(Jd).max() * np.abs(x).sum())


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("c", [1e-3, 0.3, 50.0])
def test_woodbury_solve_matches_dense(compiled, c):
    rng = np.random.default_rng(3)
    _, _, _, _, _, A, p = problem(rng, 9, 6, 4, OddPower(1, 0.1), compiled=compiled)
    jac = flow_field.FlowJacobian(p, flow_field.field(p, A))
    M = np.eye(A.size) - c * jac.dense()
    b = rng.standard_normal(A.size)
    x = jac.factor(c).solve(b)
    np.testing.assert_allclose(x, np.linalg.solve(M, b), rtol=1e-9, atol=1e-12 * np.abs(x).max())


@pytest.mark.parametrize("act", [OddPower(1, 0.1), OddPower(2, 0.2), OddPower(1, 0.0)], ids=str)
def test_compiled_kernels_are_pinned_to_numpy(act):
    """The numba fast path does the NumPy reference's arithmetic (to round-off)."""
    rng = np.random.default_rng(4)
    _, _, _, _, _, A, pn = problem(rng, 11, 7, 5, act, compiled=False)
    pc = flow_field.Problem(act, pn.B, pn.y, pn.w, compiled=True)
    assert pc.compiled and not pn.compiled
    v = pn.velocity(A)
    np.testing.assert_allclose(pc.velocity(A), v, atol=1e-13 * np.abs(v).max())
    assert pc.grad_norm(A) == pytest.approx(pn.grad_norm(A), rel=1e-12)
    with pytest.raises(ValueError, match="no compiled flow kernel"):
        flow_field.Problem(Tanh(), pn.B, pn.y, pn.w, compiled=True)
    assert flow_kernels.velocity is not None


@pytest.mark.parametrize("act", [OddPower(1, 0.1), OddPower(2, 0.2), OddPower(1, 0.0)], ids=str)
@pytest.mark.parametrize("mdn", [(10, 3, 3), (7, 5, 4), (40, 12, 12)], ids=["fig1a", "n<d", "blas"])
def test_compiled_retraction_is_pinned_to_numpy(act, mdn):
    """The flow's record-time retraction onto M, compiled, is the NumPy Gauss–Newton's (to
    round-off): from a point off M by an integration error and from one far off it."""
    rng = np.random.default_rng(5)
    _, _, _, _, _, A, pn = problem(rng, *mdn, act, compiled=False)
    pc = flow_field.Problem(act, pn.B, pn.y, pn.w, compiled=True)
    on_m = pn.retract(A)
    assert np.abs(model.residual(np, act, on_m[None], pn.B, pn.y, pn.w)).max() <= 1e-13  # on M
    for start in (on_m + 1e-9 * rng.standard_normal(A.shape), on_m + 0.05 * rng.standard_normal(A.shape)):
        ref, ok = model.newton_retract(np, act, start[None], pn.B, pn.y, pn.w)
        assert ok[0]
        got = pc.retract(start)
        np.testing.assert_allclose(got, ref[0], rtol=0, atol=1e-12 * np.abs(ref).max())
        assert np.abs(model.residual(np, act, got[None], pn.B, pn.y, pn.w)).max() <= 1e-13  # its stop


def test_compiled_retraction_falls_back_to_numpy_on_a_singular_gram():
    """φ = z³ (ν = 0) with z_j2 = 0 for every neuron: φ' = 0 there, the Gram matrix has a zero
    row; the compiled solve refuses it and NumPy's least-squares steps move sample 1 alone."""
    act = OddPower(1, 0.0)
    B, y, w = np.eye(2), np.array([0.3, -0.2]), np.ones(3)
    pc = flow_field.Problem(act, B, y, w, compiled=True)
    A = np.array([[0.5, 0.0], [0.3, 0.0], [0.0, 0.0]])
    with pytest.raises(np.linalg.LinAlgError):
        flow_kernels.newton_retract(A, B, pc.K, y, w, 3, 0.0, 1e-13, 50)
    ref, ok = model.newton_retract(np, act, A[None], B, y, w)
    assert not ok[0] and not np.array_equal(ref[0], A)  # it moved, and cannot reach M from here
    np.testing.assert_array_equal(pc.retract(A), ref[0])


@pytest.mark.parametrize("mdn", [(10, 3, 3), (7, 5, 4), (40, 12, 12)], ids=["fig1a", "n<d", "blas"])
def test_cvode_callbacks_give_the_kernels_bits(mdn):
    """CVODE's right-hand side and root function (flow_kernels.pack, velocity_into and
    grad_norm_flat, one compiled call each) give exactly the kernels' bits at the same point."""
    rng = np.random.default_rng(5)
    act = OddPower(1, 0.1)
    _, _, _, _, _, A, p = problem(rng, *mdn, act, kappa=0.7, compiled=True)
    P, dims = flow_kernels.pack(p.B, p.K, p.s, p.y, p.w, float(act.nu), p.kappa)
    v = A.ravel().copy()
    v.flags.writeable = False  # as CVODE hands it over
    out = np.full(v.size, np.nan)
    flow_kernels.velocity_into(v, out, P, dims, act.p)
    assert np.array_equal(out, p.velocity(A).ravel())
    assert flow_kernels.grad_norm_flat(v, P, dims, act.p) == p.grad_norm(A)
    # what CVODE is handed: Problem.flat_callbacks, compiled and in NumPy
    for q in (p, flow_field.Problem(act, p.B, p.y, p.w, kappa=p.kappa, compiled=False)):
        rhs, gnorm = q.flat_callbacks()
        out[:] = np.nan
        rhs(0.0, v, out)
        assert np.array_equal(out, q.velocity(A).ravel())
        assert gnorm(v) == q.grad_norm(A)


@pytest.mark.parametrize("integrator", ["cvode", "bdf"])
@pytest.mark.parametrize("wkind", ["equal", "unequal"])
def test_structured_and_dense_integrators_agree(wkind, integrator):
    """Same flow, same tolerances: each integrator ends where the dense one does and records the same F."""
    rng = np.random.default_rng(5)
    act = OddPower(1, 0.1)
    m, d, n = 6, 4, 3
    X = unit_rows(rng, n, d)
    y = rng.standard_normal(n)
    w = np.ones(m) if wkind == "equal" else rng.uniform(0.5, 2.0, m)
    theta0 = 0.5 * rng.standard_normal((m, d))
    kw = dict(tol=1e-10, tau_max=1e4, records=30)
    new = flow.run_flow(act, theta0, X, y, w, integrator=integrator, **kw)
    old = flow_reference.run_flow_dense(act, theta0, X, y, w, **kw)
    assert new.integrator == integrator
    assert new.status == old.status == "converged"
    np.testing.assert_allclose(new.theta_end, old.theta_end, atol=1e-7)
    both = np.isfinite(new.sharpness) & np.isfinite(old.sharpness)
    assert both.sum() >= 10
    np.testing.assert_allclose(new.sharpness[both], old.sharpness[both], rtol=1e-6)
    assert new.tau_eps == pytest.approx(old.tau_eps, rel=1e-3)


@pytest.mark.parametrize("mdn", [(64, 32, 16), (100, 30, 15)], ids=str)
def test_flow_from_sgd_reaches_theorem2_point_at_research_size(mdn):
    """Label-noise SGD for a while, then the flow from its last iterate: within 1e-6 of z*."""
    m, d, n = mdn
    rng = np.random.default_rng(6)
    act = OddPower(1, 0.1)
    X = rng.uniform(0, 1, (n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = rng.uniform(0, 1, n)
    w = np.ones(m)
    theta0 = 0.1 * rng.standard_normal((1, m, d))
    res = sgd.label_noise_sgd(
        np, act, theta0, X, y, w, eta=0.02, sigma=0.1, steps=3000, record_steps=np.array([0, 3000]), seed=0
    )
    last = res.theta[0, -1]
    assert np.all(np.isfinite(last))
    zs = theory.target_z(act, y, w)
    Fs = theory.min_sharpness(act, zs, X, w)
    out = flow.run_flow(act, last, X, y, w, tol=1e-9, records=20, z_star=zs, F_star=Fs)
    assert out.status == "converged", (out.status, out.notes)
    assert np.max(np.abs(out.theta_end @ X.T - zs)) <= 1e-6
    ok = np.isfinite(out.loss)
    assert np.all(out.loss[ok] <= 1e-20)
    assert np.all(np.diff(out.sharpness[ok]) <= 1e-12 * Fs)


def test_memory_does_not_grow_like_md_squared():
    """No (m·r)² array anywhere: at m·r = 2000 a dense Jacobian or identity alone is 32 MB."""
    import tracemalloc

    rng = np.random.default_rng(7)
    m, d, n = 200, 20, 10
    X = unit_rows(rng, n, d)
    y = rng.uniform(0, 1, n)
    w = np.ones(m)
    theta = 0.1 * rng.standard_normal((m, d))
    act = OddPower(1, 0.1)
    flow.run_flow(act, theta[:5], X, y, w[:5], tol=1e-3, tau_max=1.0, records=3)  # compile first
    tracemalloc.start()
    try:
        flow.run_flow(act, theta, X, y, w, tol=1e-12, tau_max=1.0, records=5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8e6, peak  # m·d·n doubles = 0.3 MB; records 5·m·d doubles = 0.2 MB


def fig1a_like(seed, m=10, d=3, n=3, k=1, nu=0.1, wkind="equal"):
    """Unit-norm Uniform[0, 1] data and labels, θ0 ~ N(0, 0.1²), as benchmarks/flow_scaling.py."""
    from simbias.data import make_inputs, make_labels

    act = OddPower(k, nu)
    X = make_inputs(n, d, {"distribution": "uniform", "low": 0, "high": 1, "normalize": True, "seed": seed})
    y = make_labels(n, {"distribution": "uniform", "low": 0, "high": 1, "seed": 1000 + seed})
    rng = np.random.default_rng(2000 + seed)
    theta = 0.1 * rng.standard_normal((m, d))
    w = np.ones(m)
    if wkind != "equal":
        w = rng.uniform(0.5, 2.0, m) * (
            np.where(np.arange(m) % 3 == 0, -1, 1) if wkind == "mixed-sign" else 1
        )
    return act, theta, X, y, w


CVODE_CASES = [
    pytest.param(0, {}, id="fig1a-mu=2e-3"),  # badly conditioned: τ to tol ≈ 2·10⁴
    pytest.param(5, {}, id="fig1a-fast"),
    pytest.param(12, {}, id="fig1a-draw12"),
    pytest.param(3, {"wkind": "unequal"}, id="fig1a-unequal-w"),
    pytest.param(4, {"wkind": "mixed-sign", "nu": 0.3}, id="mixed-sign-w"),
    pytest.param(6, {"k": 2, "nu": 0.2}, id="quintic"),
    pytest.param(7, {"m": 8, "d": 3, "n": 5}, id="n>d"),
    pytest.param(31, {"m": 20, "d": 5, "n": 5}, id="m*r=100"),
]


@pytest.mark.parametrize("seed,kw", CVODE_CASES)
def test_cvode_and_structured_bdf_agree(seed, kw):
    """The two integrators of run_flow, same flow and tolerances: the same end state (1e-7),
    the same F at every record both stored (1e-6 relative) and the same τ_ε (1e-3 relative;
    measured ≤ 4e-4 over 38 draws). τ at ‖∇_M F‖ = tol = 1e-10 is not compared: the
    gradient is then at the integrators' error floor (see the tight-reference test)."""
    act, theta, X, y, w = fig1a_like(seed, **kw)
    zs = theory.target_z(act, y, w)
    Fs = theory.min_sharpness(act, zs, X, w)
    at_target = X.shape[0] <= X.shape[1]  # n > d: Theorem 2's point is not where the flow goes
    if not at_target:
        zs = Fs = None
    out = {
        it: flow.run_flow(act, theta, X, y, w, tol=1e-10, records=60, z_star=zs, F_star=Fs, integrator=it)
        for it in ("cvode", "bdf")
    }
    cv, bd = out["cvode"], out["bdf"]
    assert cv.status == bd.status == "converged", (cv.status, bd.status)
    assert (cv.integrator, bd.integrator) == ("cvode", "bdf")
    np.testing.assert_allclose(cv.theta_end, bd.theta_end, atol=1e-7)
    both = np.isfinite(cv.sharpness) & np.isfinite(bd.sharpness)
    assert both.sum() >= 30
    np.testing.assert_allclose(cv.sharpness[both], bd.sharpness[both], rtol=1e-6)
    assert cv.tau_eps == pytest.approx(bd.tau_eps, rel=1e-3)
    # the science of each record, for the CVODE path: on M, F non-increasing, at z* in the end
    ok = np.isfinite(cv.loss)
    assert np.all(cv.loss[ok] <= 1e-20)
    assert np.all(np.diff(cv.sharpness[ok]) <= 1e-12 * cv.sharpness[ok][-1])
    if at_target:
        assert np.max(np.abs(cv.theta_end @ X.T - zs)) <= 1e-6


@pytest.mark.parametrize("seed", [7, 22])
def test_both_integrators_match_a_tight_reference(seed):
    """Against the dense integrator at rtol = 1e-11, atol = 1e-14: τ at ‖∇_M F‖ = 1e-10 within
    10 %, every record's ‖∇_M F‖ within 15 %, τ_ε within 1e-3. (CVODE at the nominal
    rtol = 1e-8 misses the first two by 1.3–1.6× and 27 %: hence flow.CVODE_TOL_SCALE.)"""
    act, theta, X, y, w = fig1a_like(seed)
    kw = dict(tol=1e-10, records=60)
    ref = flow_reference.run_flow_dense(act, theta, X, y, w, rtol=1e-11, atol=1e-14, **kw)
    assert ref.status == "converged"
    for it in ("cvode", "bdf"):
        res = flow.run_flow(act, theta, X, y, w, integrator=it, **kw)
        assert res.status == "converged"
        assert res.tau_end == pytest.approx(ref.tau_end, rel=0.1), it
        assert res.tau_eps == pytest.approx(ref.tau_eps, rel=1e-3), it
        ok = np.isfinite(res.grad_norm) & np.isfinite(ref.grad_norm)
        assert ok.sum() >= 30
        np.testing.assert_allclose(res.grad_norm[ok], ref.grad_norm[ok], rtol=0.15, err_msg=it)


@pytest.mark.parametrize("integrator", ["cvode", "bdf"])
def test_budget_exhausted_stores_every_record(integrator):
    """A τ budget too short to converge: every record stored, on M, the flow stops at tau_max."""
    act, theta, X, y, w = fig1a_like(0)
    res = flow.run_flow(act, theta, X, y, w, tau_max=5.0, records=12, integrator=integrator)
    ref = flow_reference.run_flow_dense(act, theta, X, y, w, tau_max=5.0, records=12)
    assert res.status == ref.status == "tau_budget_exhausted"
    assert res.tau_end == pytest.approx(5.0, rel=1e-12)
    assert np.all(np.isfinite(res.sharpness)) and np.all(res.loss <= 1e-20)
    np.testing.assert_allclose(res.sharpness, ref.sharpness, rtol=1e-6)
    np.testing.assert_allclose(res.theta_end, ref.theta_end, atol=1e-7)


def test_integrator_chosen_by_size():
    """auto: CVODE up to m·rank X = CVODE_MAX_UNKNOWNS, StructuredBDF above; a wrong name is refused."""
    cap = flow.CVODE_MAX_UNKNOWNS
    assert flow.choose_integrator(cap) == "cvode"
    assert flow.choose_integrator(cap + 1) == "bdf"
    assert flow.choose_integrator(cap + 1, "cvode") == "cvode"
    assert flow.choose_integrator(1, "bdf") == "bdf"
    with pytest.raises(ValueError, match="flow integrator must be one of"):
        flow.choose_integrator(10, "rk45")
    kw = dict(tol=1e-4, tau_max=1.0, records=3)
    act, theta, X, y, w = fig1a_like(1)
    assert flow.run_flow(act, theta, X, y, w, **kw).integrator == "cvode"  # m·r = 30
    m = cap // 3 + 1  # m·r = 3m > cap; d = 5 > n = 3: rank 3, not d
    act, theta, X, y, w = fig1a_like(1, m=m, d=5, n=3)
    assert flow.run_flow(act, theta, X, y, w, **kw).integrator == "bdf"


def test_cvode_stops_at_a_record_when_the_root_test_fails(monkeypatch):
    """Off M by the integration error, ‖∇_M F‖ can cross tol while on M it is still above
    (seen at CVODE's nominal tolerances: 4× above at tol = 1e-10); the root's test on M then
    fails and no later root comes. Forced here (a slack of 0.5 fails every root's test): the
    first record on M below tol must stop the flow, not the τ budget."""
    monkeypatch.setattr(flow, "STOP_SLACK", 0.5)
    act, theta, X, y, w = fig1a_like(5)
    res = flow.run_flow(act, theta, X, y, w, tol=1e-10, tau_max=1e4, records=60, integrator="cvode")
    assert res.status == "converged"
    stop = int(np.flatnonzero(res.tau == res.tau_end)[0])  # it stopped at a record ...
    assert res.grad_norm[stop] <= 1e-10 < np.min(res.grad_norm[:stop])  # ... the first one below tol
    assert np.all(np.isnan(res.grad_norm[stop + 1 :]))
    assert res.tau_end < 1e4


def test_structured_bdf_reads_no_uninitialised_memory(monkeypatch):
    """SciPy's BDF allocates its table of differences with np.empty and fills rows 2 and up
    only as it steps; the first step subtracts row 2 unset. Garbage that happens to be a
    signalling NaN gave an 'invalid value' RuntimeWarning now and then (an error under
    pytest). Here every np.empty array starts as signalling NaNs: StructuredBDF must not
    compute with them (it zeroes those rows)."""
    real_empty = np.empty

    def poisoned_empty(shape, dtype=float, *args, **kwargs):
        out = real_empty(shape, dtype, *args, **kwargs)
        if out.dtype == np.float64:
            out.view(np.uint64).fill(0x7FF0000000000001)  # a signalling NaN
        return out

    act, theta, X, y, w = fig1a_like(2)
    monkeypatch.setattr(np, "empty", poisoned_empty)
    res = flow.run_flow(act, theta, X, y, w, tol=1e-8, records=20, integrator="bdf")
    assert res.status == "converged"
