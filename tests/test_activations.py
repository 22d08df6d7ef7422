import numpy as np
import pytest

from simbias.activations import OddPower, check_beta, make_activation


@pytest.mark.parametrize("k,nu", [(1, 0.1), (1, 0.0), (2, 0.3), (3, 1.0)])
def test_derivatives_match_finite_differences(k, nu):
    act = OddPower(k=k, nu=nu)
    z = np.linspace(-1.5, 1.5, 41)
    h = 1e-6
    for f, df in [(act.phi, act.d1), (act.d1, act.d2), (act.d2, act.d3)]:
        fd = (f(z + h) - f(z - h)) / (2 * h)
        np.testing.assert_allclose(df(z), fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("k,nu", [(1, 0.1), (1, 0.01), (2, 0.3), (2, 2.0)])
def test_beta_is_valid_and_tight(k, nu):
    """β satisfies Assumption 3 on a grid, 1.01·β does not, and the paper's β is smaller."""
    act = OddPower(k=k, nu=nu)
    assert check_beta(act, act.beta)
    assert not check_beta(act, 1.01 * act.beta)
    assert act.beta_paper <= act.beta


def test_cubic_constants():
    act = OddPower(k=1, nu=0.1)
    assert act.rho1 == 0.1 and act.rho2 == 6.0
    assert act.beta == pytest.approx(16 / 3 * 0.1**1.5, rel=1e-12)
    assert act.beta_paper == pytest.approx(0.01)
    assert OddPower(k=2, nu=0.1).rho2 == 0.0  # φ''' = 60 z² vanishes at 0


def test_inverses():
    act = OddPower(k=2, nu=0.2)
    v = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(act.phi(act.inverse(v)), v, atol=1e-12)
    np.testing.assert_allclose(act.d2(act.d2_inverse(v)), v, atol=1e-12)


def test_make_activation():
    assert make_activation({"name": "cubic", "nu": 0.5}) == OddPower(1, 0.5)
    assert make_activation({"name": "odd_power", "k": 2, "nu": 0.5}) == OddPower(2, 0.5)
    with pytest.raises(ValueError, match="unknown activation"):
        make_activation({"name": "relu"})
