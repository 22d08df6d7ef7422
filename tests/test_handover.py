"""The hand-over ratio (comparison.csv's handover_move_ratio) and the trajectory figure's note
about it (issue 27): the retraction's move is measured against how far the whole run takes θ,
a scale that does not vanish when SGD has already converged, so the ratio is small there (it
was the flow's own travel, which goes to 0 then: 6.4e+05 % and a red "NOT small"), and it is
never inf; NaN only where it is undefined, and then a flag says why."""

from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr

from simbias.figures.style import _handover_text
from simbias.stages.compare import HANDOVER_SMALL, _flag, _handover

rng = np.random.default_rng(27)
M, D, N = 6, 4, 3
X = rng.standard_normal((N, D))


def handover(th_init, th_sgd, th_flow0, th_end) -> dict:
    R = th_init.shape[0]
    return _handover(th_init, th_sgd, th_flow0, th_end, X, np.zeros(R), np.ones(R), np.ones(R))


def converged(flow_travel: float, R: int = 3):
    """θ0 (scale 0.1), then SGD ends next to a point of M (off it by 0.01), the retraction lands
    on it, and the flow moves on by ``flow_travel`` (0: SGD had already converged)."""
    th_init = 0.1 * rng.standard_normal((R, M, D))
    th_star = rng.standard_normal((R, M, D))
    off = rng.standard_normal((R, M, D))
    th_sgd = th_star + 0.01 * off / np.linalg.norm(off, axis=(1, 2), keepdims=True)
    step = rng.standard_normal((R, M, D))
    th_end = th_star + flow_travel * step / np.linalg.norm(step, axis=(1, 2), keepdims=True)
    return th_init, th_sgd, th_star, th_end


@pytest.mark.parametrize("flow_travel", [0.0, 1e-12, 1e-3])
def test_a_converged_sgd_has_a_small_finite_ratio(flow_travel):
    th_init, th_sgd, th_flow0, th_end = converged(flow_travel)
    h = handover(th_init, th_sgd, th_flow0, th_end)
    np.testing.assert_allclose(h["handover_theta_move"], 0.01, rtol=1e-12)
    np.testing.assert_allclose(h["flow_theta_travel"], flow_travel, atol=1e-15)
    overall = np.linalg.norm(th_end - th_init, axis=(1, 2))
    np.testing.assert_allclose(h["theta_displacement"], overall, rtol=1e-15)
    np.testing.assert_allclose(h["handover_move_ratio"], 0.01 / overall, rtol=1e-12)
    assert np.all(np.isfinite(h["handover_move_ratio"])) and np.all(h["handover_move_ratio"] < HANDOVER_SMALL)


def test_a_retraction_that_does_most_of_the_travel_is_not_small():
    """SGD far off M (init scale 1e-300 and few steps: loss 0.3): the retraction carries θ almost
    all the way and the flow does not move (the ratio was inf)."""
    th_init = np.full((1, M, D), 1e-300)
    th_flow0 = rng.standard_normal((1, M, D))
    h = handover(th_init, th_init + 1e-3, th_flow0, th_flow0)
    assert h["flow_theta_travel"][0] == 0.0
    assert HANDOVER_SMALL < h["handover_move_ratio"][0] <= 1.0


def test_undefined_ratios_are_nan_and_flagged():
    th = rng.standard_normal((4, M, D))
    nan = np.full((M, D), np.nan)
    th_init = th.copy()
    th_sgd = th.copy()
    th_flow0 = th.copy()
    th_end = th.copy()
    # 0: nothing moved at all -> 0; 1: the flow failed (NaN θ) -> NaN (it was 0);
    # 2: θ ends exactly at θ0 though the retraction moved it -> NaN; 3: a normal replica
    th_flow0[1] = th_end[1] = nan
    th_sgd[2] = th[2] + 0.5
    th_end[3] = th[3] + 1.0
    th_flow0[3] = th[3] + 0.1
    ratio = handover(th_init, th_sgd, th_flow0, th_end)["handover_move_ratio"]
    assert ratio[0] == 0.0 and np.isnan(ratio[1]) and np.isnan(ratio[2]) and np.isfinite(ratio[3])
    assert not np.isinf(ratio).any()

    def row(status, r):
        return SimpleNamespace(
            sgd_diverged=False,
            flow_status=status,
            reached_theorem2_point=True,
            z_dist_flow_end=0.0,
            handover_move_ratio=r,
        )

    assert _flag(row("retraction_failed", ratio[1]), True, 1e-6) == "flow retraction_failed"
    assert "hand-over ratio undefined" in _flag(row("converged", ratio[2]), True, 1e-6)
    assert _flag(row("converged", ratio[0]), True, 1e-6) == ""
    assert _flag(row("converged", ratio[3]), True, 1e-6) == ""


def comparison(**cols) -> xr.Dataset:
    base = dict(
        loss_sgd_end=1e-3,
        sharpness_handover_before=4.3,
        sharpness_handover_after=4.31,
        handover_theta_move=0.05,
        handover_z_move=0.01,
        theta_displacement=1.0,
        handover_move_ratio=0.05,
        flow_status="converged",
    )
    base.update(cols)
    return xr.Dataset({k: ("replica", np.repeat(np.asarray([v]), 3)) for k, v in base.items()})


def test_the_note_says_what_the_ratio_measures():
    text, big = _handover_text(comparison(), np.ones(3, bool))
    flat = text.replace("\n", " ")
    assert not big and "NOT small" not in text
    assert "moves θ by 0.05" in flat and "5% of ‖θ(end) − θ(0)‖ = 1, how far the whole run takes θ" in flat
    text, big = _handover_text(
        comparison(handover_move_ratio=0.99, handover_theta_move=52.0), np.ones(3, bool)
    )
    assert big and "99% of ‖θ(end) − θ(0)‖" in text.replace("\n", " ") and "NOT small (> 10%)" in text
    text, big = _handover_text(
        comparison(
            **{k: np.nan for k in ("handover_theta_move", "handover_move_ratio")},
            flow_status="retraction_failed",
        ),
        np.ones(3, bool),
    )
    assert big and "the flow did not start" in text and "retraction_failed × 3" in text
