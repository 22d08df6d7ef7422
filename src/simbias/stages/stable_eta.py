"""When every replica diverged: the largest stable η, estimated, and the message that says so."""

from __future__ import annotations

import logging

import numpy as np

from .. import model
from ..sgd import label_noise_sgd

log = logging.getLogger(__name__)


def largest_stable_eta(xp, act, theta0, X, y, w, cfg: dict, trial_steps: int = 2000) -> dict:
    """Estimate the largest η at which no replica diverges, when the configured η made all diverge.

    Short label-noise SGD runs (the job's own θ0, data, seeds and noise; at most
    ``trial_steps`` steps) at η/2, η/4, ... until one keeps every replica finite and
    under ``sgd.loss_bound``, then six geometric bisection steps (about 1% apart).
    It is empirical: a longer run can still diverge close to this η. For context it
    also reports where that run settled, the linear-stability limit 2/λ_max(∇²L)
    with ∇²L ≈ 2JᵀJ (exact on the zero-loss manifold M), median over replicas.
    """
    s = cfg["sgd"]
    K = int(min(s["steps"], trial_steps))
    common = dict(
        sigma=cfg["sigma"],
        steps=K,
        record_steps=np.array([0, K]),
        seed=s["seed"],
        dtype=cfg["dtype"],
        loss_bound=s["loss_bound"],
    )

    def trial(eta: float):
        quiet = [logging.getLogger(f"simbias.{name}") for name in ("step_rule", "ensemble")]
        levels = [q.level for q in quiet]
        for q in quiet:
            q.setLevel(logging.ERROR)  # the trials' own divergence warnings are expected
        try:
            r = label_noise_sgd(xp, act, theta0, X, y, w, eta=eta, **common)
        finally:
            for q, level in zip(quiet, levels, strict=True):
                q.setLevel(level)
        log.info(
            "stability trial: eta = %.4g, %d of %d replicas diverged", eta, r.diverged.sum(), r.diverged.size
        )
        return None if r.diverged.any() else r

    bad, ok, res = float(cfg["eta"]), None, None
    for _ in range(30):
        eta = bad / 2
        res = trial(eta)
        if res is not None:
            ok = eta
            break
        bad = eta
    if ok is None:
        return {"eta": None, "trial_steps": K, "lowest_tried": bad}
    for _ in range(6):
        mid = float(np.sqrt(ok * bad))
        r = trial(mid)
        if r is None:
            bad = mid
        else:
            ok, res = mid, r
    th = res.theta[:, -1]
    Z = model.preactivations(np, th, X)
    lam = np.linalg.eigvalsh(2.0 * model.gram_jjt(np, act, Z, X, w))[:, -1]
    with np.errstate(divide="ignore"):
        curvature_eta = float(np.median(2.0 / lam))
    return {
        "eta": ok,
        "trial_steps": K,
        "curvature_eta": curvature_eta,
        "median_loss": float(np.median(res.loss[:, -1])),
    }


def all_diverged_message(regime: str, cfg: dict, res, initial_loss: np.ndarray, est: dict | None) -> str:
    s = cfg["sgd"]
    first, last = int(res.diverged_step.min()), int(res.diverged_step.max())
    head = (
        f"regime '{regime}': all {res.diverged.size} replicas diverged during SGD (loss non-finite or "
        f"above sgd.loss_bound = {s['loss_bound']:g}; steps {first} to {last})."
    )
    if last == 0 and np.all(np.isfinite(initial_loss)) and np.all(initial_loss > s["loss_bound"]):
        return (
            f"{head} The loss already starts above sgd.loss_bound (median {np.median(initial_loss):.3g}): "
            "raise sgd.loss_bound (or lower init.scale), eta is not the problem."
        )
    if est is None or est["eta"] is None:
        low = "" if est is None else f" (even eta = {est['lowest_tried']:.3g} diverged in a short trial)"
        return f"{head} Use a much smaller eta than {cfg['eta']:g}{low}; check the labels' and init's scale."
    e, c = est["eta"], est["curvature_eta"]
    curvature = (
        f" Where that run settled the linear-stability limit is 2/λ_max(∇²L) ≈ {c:.3g} (∇²L ≈ 2JᵀJ near "
        "the zero-loss manifold; median over replicas)."
        if np.isfinite(c)
        else ""
    )
    return (
        f"{head} Use a smaller eta than {cfg['eta']:g}: the largest stable eta is estimated at about "
        f"{e:.3g} (every replica stayed finite for {est['trial_steps']} steps at that eta, with the same "
        f"data, seeds and label noise; bisection).{curvature} A longer run can still diverge near the "
        f"limit: leave a margin, e.g. eta: {float(f'{e / 2:.2g}'):g}."
    )
