"""Figure kind trajectory: SGD and the flow on one τ axis (sharpness gap, loss, ‖∇_M F‖,
singular values); GD's own version without a flow."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .. import analysis, model, storage
from ..activations import make_activation
from .singular_values import ONE_SV_NOTE, _long, _meaningful_ranks, _sv_lines
from .style import (
    BAND,
    BAND_TEXT,
    FONT,
    _algorithm,
    _clock_label,
    _handover_text,
    _header,
    _kept,
    _legend_outside,
    _mark_handover,
    _save,
    _side_note,
)


def _fill_end(a: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Records after a replica stopped are NaN: fill them with its end state (flow.nc's *_end)."""
    out = a.copy()
    for t in range(1, out.shape[1]):
        miss = np.isnan(out[:, t])
        out[:, t][miss] = end[miss]
    return out


def _grad_norms(act, theta: np.ndarray, X: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, int]:
    """‖∇_M F‖ at each θ of a batch (b, m, d); NaN where θ is not finite or JJᵀ is singular
    (tanh far out, where φ′ is 0 in floating point; equal inputs x_i). Returns the norms and how
    many were singular."""
    out = np.full(theta.shape[0], np.nan)
    ok = np.flatnonzero(np.isfinite(theta).all(axis=(1, 2)))

    def norms(idx):
        return model.norm(np, model.riemannian_grad(np, act, theta[idx], X, w))

    try:
        out[ok] = norms(ok)
        return out, 0
    except np.linalg.LinAlgError:  # one at a time, to keep the others
        singular = 0
        for i in ok:
            try:
                out[i] = norms(np.array([i]))[0]
            except np.linalg.LinAlgError:
                singular += 1
        return out, singular


GAP_FLOOR_REL = analysis.GAP_FLOOR_REL  # F − F* below this fraction of F* is drawn at the floor


def _shade_below(ax, tau: np.ndarray, gap: np.ndarray, label: str) -> None:
    """Shade the τ spans where the replica median of F − F* is negative (iterates off M)."""
    with np.errstate(all="ignore"):
        below = np.nanmedian(gap, axis=0) < 0 if gap.size else np.zeros(tau.shape, bool)
    if below.any():
        ax.fill_between(
            tau,
            0,
            1,
            where=below,
            step="mid",
            color="0.6",
            alpha=0.25,
            lw=0,
            transform=ax.get_xaxis_transform(),
            label=label,
        )


def _median_band(ax, tau, vals, label: str, color, floor: float, below: str) -> None:
    """Median over replicas (rows of vals) and its 10th–90th percentile band, on a log axis.

    Values under ``floor`` are drawn at the floor; a negative median is drawn at the floor
    (``below="floor"``) or not at all (``below="hide"``).
    """
    if vals.size == 0:
        return
    with np.errstate(all="ignore"):
        med, lo, hi = (np.nanpercentile(vals, q, axis=0) for q in (50, 10, 90))
    line = np.maximum(med, floor)
    if below == "hide":
        line = np.where(med > 0, line, np.nan)
    ax.plot(tau, line, color=color, label=label)
    ax.fill_between(tau, np.maximum(lo, floor), np.maximum(hi, floor), color=color, alpha=0.2, lw=0)


def trajectory(regime, cfg, inputs, png, pdf) -> None:
    """SGD then the flow on one τ axis: F − F*, ‖∇_M F‖ and σ_k/σ_1, with the Theorem 3 bound."""
    data = storage.open_dataset(inputs["data"])
    sgd = storage.open_dataset(inputs["sgd"])
    fl = storage.open_dataset(inputs["flow"])
    cmp_ = storage.open_dataset(inputs["comparison"])
    keep, note = _kept(sgd)
    act = make_activation(cfg["activation"])
    X, w = data["x"].values, data["w"].values
    F_star = float(cmp_["sharpness_star"].values[0])
    has_star = np.isfinite(F_star)
    tau_s = sgd["tau"].values
    pos = tau_s > 0
    # flow records up to the first one past the last replica's stop
    last = np.nanmax(fl["tau_end"].values[keep]) if np.isfinite(fl["tau_end"].values[keep]).any() else np.inf
    n_f = min(int(np.searchsorted(fl["tau"].values, last)) + 1, fl.sizes["record"])
    fl = fl.isel(record=slice(0, n_f))
    tau_f = fl["tau"].values
    th_s = sgd["theta"].values[:, pos]
    R, T = th_s.shape[:2]
    g_s, singular = _grad_norms(act, th_s.reshape((R * T,) + th_s.shape[2:]), X, w)
    g_s = g_s.reshape(R, T)
    F_s = sgd["sharpness"].values[:, pos]
    th_end = fl["theta_end"].values
    F_f = _fill_end(fl["sharpness"].values, model.sharpness(np, act, th_end, X, w))
    g_f = _fill_end(fl["grad_norm"].values, fl["grad_norm_end"].values)
    sv_end = storage.sv_padded(analysis.singular_values_nan(th_end @ X.T), fl.sizes["rank"])
    floor = 1e-16
    alg = _algorithm(sgd)
    # one colour per stage in every panel, also when SGD has no τ (GD) and only the flow is drawn
    stage_colors = dict(zip([alg, "manifold flow"], sns.color_palette(), strict=False))

    def stage_frame(tau, vals, stage):
        v = vals[keep]
        return pd.DataFrame({"τ": np.tile(tau, v.shape[0]), "value": v.ravel(), "stage": stage})

    K = _meaningful_ranks(cfg)
    fig, axes = plt.subplots(3 if K > 1 else 2, 1, figsize=(10.5, 11 if K > 1 else 7.8), sharex=True)
    notes: list[str] = []  # beside the top panel, under its legend
    ax = axes[0]
    if has_star:  # F − F* on a log axis: the approach to F*, with round-off drawn at a floor
        gap_floor = GAP_FLOOR_REL * abs(F_star)
        colors = sns.color_palette()
        gap_s = F_s[keep] - F_star
        # SGD's iterates lie off M, where F can be below F*: no line there, a grey span instead
        _median_band(ax, tau_s[pos], gap_s, alg, colors[0], floor=gap_floor, below="hide")
        _shade_below(ax, tau_s[pos], gap_s, "median F < F* (iterates off M)")
        # the flow stays on M: F ≥ F* up to round-off, drawn at the floor
        _median_band(
            ax, tau_f, F_f[keep] - F_star, "manifold flow", colors[1], floor=gap_floor, below="floor"
        )
        ax.axhline(gap_floor, color="grey", lw=0.8, ls=":", label=f"round-off floor {GAP_FLOOR_REL:g}·F*")
        ax.set(yscale="log", ylabel=f"F − F*   (F* = {F_star:.4g})")
    else:
        df = pd.concat([stage_frame(tau_s[pos], F_s, alg), stage_frame(tau_f, F_f, "manifold flow")])
        zero = int((df["value"] <= 0).sum())  # F = 0 where φ′ = 0 in floating point (saturated tanh)
        df["value"] = np.maximum(df["value"], floor)
        sns.lineplot(
            data=df,
            x="τ",
            y="value",
            hue="stage",
            palette=stage_colors,
            estimator="median",
            errorbar=BAND,
            ax=ax,
        )
        ax.set(yscale="log", ylabel="sharpness F" + ("  (floor 1e-16)" if zero else ""))
        notes.append("no F*: Theorem 2 does not apply")
        if zero:
            notes.append(f"F = 0 at {zero} records (φ′ = 0 in floating point), drawn at the floor")
    _legend_outside(ax)
    ax = axes[1]
    df = pd.concat(
        [
            stage_frame(tau_s[pos], np.maximum(g_s, floor), alg),
            stage_frame(tau_f, np.maximum(g_f, floor), "manifold flow"),
        ]
    )
    sns.lineplot(
        data=df, x="τ", y="value", hue="stage", palette=stage_colors, estimator="median", errorbar=BAND, ax=ax
    )
    eps = cfg["theory"]["epsilon"]
    ax.axhline(eps, color="grey", lw=0.8, ls=":", label=f"ε = {eps:g}")
    bound = cmp_["tau_eps_theorem3_bound"].values[keep]
    grad_notes = []  # beside the middle panel
    if np.isfinite(bound).any():
        tb = float(fl.attrs["tau_start"]) + np.nanmedian(bound)
        ax.axvline(tb, color="crimson", lw=1.2, ls="--", label=f"Theorem 3 bound\n(median) τ = {tb:.3g}")
    else:
        applies = all(int(cmp_.attrs.get(f"theorem{t}_applicable", 1)) for t in (2, 3))
        grad_notes.append(
            "no Theorem 3 bound: no replica to bound"
            if applies
            else "no Theorem 3 bound: not applicable (see title)"
        )
    ax.set(yscale="log", ylabel="‖∇_M F‖  (floor 1e-16)")
    _legend_outside(ax)
    if singular:
        grad_notes.append(
            f"{alg}: ‖∇_M F‖ not drawn at {singular} of its iterates, where JJᵀ is singular "
            "(the constraints' gradients are dependent there, e.g. φ′ = 0 in floating point or "
            "equal inputs x_i: no tangent space)"
        )
    if grad_notes:
        _side_note(ax, [(note, "k") for note in grad_notes])
    if K > 1:
        ax = axes[2]
        ds_ = _long(sgd["feature_sv"].values[:, pos], tau_s[pos], "τ", range(2, K + 1), keep)
        df_ = _long(_fill_end(fl["feature_sv"].values, sv_end), tau_f, "τ", range(2, K + 1), keep)
        ds_["stage"], df_["stage"] = alg, "manifold flow"
        df = pd.concat([ds_, df_])
        df["value"] = np.maximum(df["value"], floor)
        what = _sv_lines(ax, df, "τ", style="stage")
        ax.set(yscale="log", ylabel="σₖ(Z) / σ₁(Z)  (floor 1e-16)")
    else:
        what = BAND_TEXT
    axes[-1].set(xscale="log", xlabel=_clock_label(sgd))
    _mark_handover(axes, float(fl.attrs["tau_start"]))
    text, big = _handover_text(cmp_, keep)
    _side_note(axes[0], [(note, "k") for note in notes] + [(text, "crimson" if big else "k")])
    caveat = "" if K > 1 else f"\n{ONE_SV_NOTE}: no σₖ/σ₁ panel"
    if not int(cmp_.attrs.get("theorem2_applicable", 1)):
        caveat += f"\ntheory not applicable: {cmp_.attrs.get('theorem2_reason', '')}"
    elif not int(cmp_.attrs.get("theorem3_applicable", 1)):
        caveat += f"\nTheorem 3 not applicable: {cmp_.attrs.get('theorem3_reason', '')}"
    bottom = "" if what == BAND_TEXT else " (bottom panel: medians only, too many ratios for bands)"
    fig.suptitle(
        f"{_header(regime, cfg)}\n{alg} continued by the Riemannian flow of F on M; {note}\n"
        f"{BAND_TEXT}{bottom}\na replica that stopped at ‖∇_M F‖ ≤ tol is drawn at its end state" + caveat
    )
    _save(fig, png, pdf)


def gd_trajectory(regime, cfg, inputs, png, pdf) -> None:
    """The GD control against its own steps: loss, F − F* and σ_k/σ_1, no flow after it.

    Without label noise there is no drift along M: GD stops where it reaches M and keeps
    the rank it arrived with. The median arrival step (loss ≤ 1e-12 for good) is marked.
    """
    sgd = storage.open_dataset(inputs["sgd"])
    cmp_ = storage.open_dataset(inputs["comparison"])
    keep, note = _kept(sgd)
    step = sgd["step"].values
    pos = step > 0
    F_star = float(cmp_["sharpness_star"].values[0])
    has_star = np.isfinite(F_star)

    def frame(vals, name):
        v = vals[keep][:, pos]
        return pd.DataFrame({"GD step": np.tile(step[pos], v.shape[0]), "value": v.ravel(), "": name})

    K = _meaningful_ranks(cfg)
    fig, axes = plt.subplots(3 if K > 1 else 2, 1, figsize=(8, 9 if K > 1 else 6.5), sharex=True)
    sns.lineplot(
        data=frame(sgd["loss"].values, "loss"),
        x="GD step",
        y="value",
        estimator="median",
        errorbar=BAND,
        ax=axes[0],
    )
    axes[0].set(yscale="log", ylabel="loss L")
    F = sgd["sharpness"].values - (F_star if has_star else 0.0)
    sns.lineplot(data=frame(F, "F"), x="GD step", y="value", estimator="median", errorbar=BAND, ax=axes[1])
    axes[1].set(ylabel=f"F − F*  (F* = {F_star:.4g})" if has_star else "F (no F*)")
    if K > 1:
        df = _long(sgd["feature_sv"].values[:, pos], step[pos], "GD step", range(2, K + 1), keep)
        df["value"] = np.maximum(df["value"], 1e-16)
        _sv_lines(axes[2], df, "GD step")
        axes[2].set(yscale="log", ylabel="σₖ(Z) / σ₁(Z)")
    axes[-1].set(xscale="log")
    arrival = cmp_["step_arrival_on_M"].values[keep]
    arrival = arrival[arrival >= 0]
    if arrival.size:
        k_arr = float(np.median(arrival))
        for ax in axes:
            ax.axvline(k_arr, color="k", lw=0.8, ls=":")
        ranks = cmp_["feature_rank_arrival_on_M"].values[keep]
        final = cmp_["feature_rank_flow_end"].values[keep]
        axes[0].text(
            k_arr,
            axes[0].get_ylim()[1],
            f" on M (loss ≤ 1e-12), median step {k_arr:.3g}",
            va="top",
            fontsize=FONT["note"],
        )
        rank_note = f"rank on arrival at M (median) {np.median(ranks):g}, at the end {np.median(final):g}"
    else:
        rank_note = "GD did not reach M (loss ≤ 1e-12) within its steps"
    fig.suptitle(
        f"{_header(regime, cfg)}\ngradient descent (control), {note}: median and 10–90% band\n"
        f"no flow: without label noise there is no drift along M; {rank_note}"
        + ("" if K > 1 else f"\n{ONE_SV_NOTE}: no σₖ/σ₁ panel"),
        fontsize=FONT["title"],
    )
    _save(fig, png, pdf)
