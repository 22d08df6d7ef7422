"""Figure kinds sgd_alone and brute_force: SGD's own iterates without the flow, and SGD
continued past the hand-over against the flow."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .. import model, storage
from ..activations import make_activation
from .singular_values import (
    ONE_SV_NOTE,
    _collapse_line,
    _end_medians,
    _end_text,
    _long,
    _meaningful_ranks,
    _sigma1_line,
    _sv_lines,
)
from .style import BAND, BAND_TEXT, FONT, _header, _legend_outside, _mark_handover, _nanmedian, _save
from .trajectory import _fill_end


def _sgd_and_continued(inputs: dict):
    """sgd.nc's records followed by brute_force.nc's (SGD continued past the hand-over)."""
    import xarray as xr

    sgd = storage.open_dataset(inputs["sgd"])
    bf = storage.open_dataset(inputs["brute"])
    both = xr.concat(
        [sgd, bf.isel(record=slice(1, None))],
        dim="record",
        data_vars="minimal",
        coords="minimal",
        compat="override",
        join="override",
    )
    return sgd, bf, both


def sgd_alone(regime, cfg, inputs, png, pdf) -> None:
    """The paper's Figure 1a: σ_k(Z)/σ_1(Z) of label-noise SGD's own iterates against steps, no flow."""
    sgd, bf, both = _sgd_and_continued(inputs)
    keep = ~(sgd["diverged"].values.astype(bool) | bf["diverged"].values.astype(bool))
    note = f"{keep.sum()} of {keep.size} replicas" if not keep.all() else f"{keep.size} replicas"
    step = both["step"].values
    pos = step > 0
    K = _meaningful_ranks(cfg)
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    if K > 1:
        df = _long(both["feature_sv"].values[:, pos], step[pos], "SGD step", range(2, K + 1), keep)
        what = _sv_lines(ax, df, "SGD step")
        ax.set(ylabel="σₖ(Z) / σ₁(Z)  (Z = ΘXᵀ)")
        _collapse_line(ax)
    else:  # nothing to divide: σ_1 itself
        _sigma1_line(ax, both["feature_sv"].values[keep][:, pos, 0], step[pos], "SGD step")
        what = f"{ONE_SV_NOTE}: σ₁(Z) itself; {BAND_TEXT}"
        ax.set(ylabel="σ₁(Z)  (Z = ΘXᵀ)")
    ax.set(xscale="log", yscale="log")
    k_h = int(sgd["step"].values[-1])
    ax.axvline(
        k_h,
        color="k",
        lw=0.8,
        ls=":",
        label=f"{regime} hands over to\nthe flow here; SGD goes on\n(fresh noise streams)",
    )
    _legend_outside(ax)  # again, with these two lines (in the key's column, off the data)
    end = _end_medians(both["feature_sv"].values, keep, K) if K > 1 else np.zeros(0)
    per_step = cfg["eta"] ** 2 * cfg["sigma"] ** 2
    top = ax.secondary_xaxis("top", functions=(lambda k: k * per_step, lambda t: t / per_step))
    top.set_xlabel("flow time τ = η²σ²·step", fontsize=FONT["note"])
    ax.set_title(
        f"{_header(regime, cfg)}\nlabel-noise SGD alone (no flow), {note}\n{what}"
        + (f"\n{_end_text(step[-1], step[-1] * per_step, end)}" if end.size else ""),
        fontsize=FONT["title"],
    )
    _save(fig, png, pdf)


def brute_force_overlay(regime, cfg, inputs, png, pdf) -> None:
    """SGD run on past the hand-over against the flow, on one τ axis, with SGD's stationary spread."""
    data = storage.open_dataset(inputs["data"])
    fl = storage.open_dataset(inputs["flow"])
    cmp_ = storage.open_dataset(inputs["comparison"])
    sgd, bf, both = _sgd_and_continued(inputs)
    keep = ~(sgd["diverged"].values.astype(bool) | bf["diverged"].values.astype(bool))
    act = make_activation(cfg["activation"])
    X, w = data["x"].values, data["w"].values
    F_star = float(cmp_["sharpness_star"].values[0])
    has_star = np.isfinite(F_star)
    shift = F_star if has_star else 0.0
    tau_s = both["tau"].values
    pos = tau_s >= 0.5 * float(
        fl.attrs["tau_start"]
    )  # from just before the hand-over (sgd_alone has the rest)
    tau_b = float(cmp_["brute_tau"].values[0])
    n_f = max(int(np.searchsorted(fl["tau"].values, tau_b, side="right")), 1)  # flow records up to τ_b
    flc = fl.isel(record=slice(0, n_f))
    tau_f = flc["tau"].values
    th_end = fl["theta_end"].values
    F_f = _fill_end(flc["sharpness"].values, model.sharpness(np, act, th_end, X, w)) - shift

    def frame(tau, vals, stage):
        v = vals[keep]
        return pd.DataFrame({"τ": np.tile(tau, v.shape[0]), "value": v.ravel(), "stage": stage})

    fig, axes = plt.subplots(2, 1, figsize=(8, 8), sharex=True)
    ax = axes[0]
    df = pd.concat(
        [
            frame(tau_s[pos], both["sharpness"].values[:, pos] - shift, "label-noise SGD (run on)"),
            frame(tau_f, F_f, "manifold flow"),
        ]
    )
    sns.lineplot(data=df, x="τ", y="value", hue="stage", estimator="median", errorbar=BAND, ax=ax)
    tolF = _nanmedian(cmp_["brute_sharpness_tol"].values[keep])
    F_end = _nanmedian(cmp_["brute_sharpness_gap_flow"].values[keep])
    if np.isfinite(tolF) and np.isfinite(F_end):  # NaN where the comparison has no tolerance
        ax.axhspan(
            F_end - tolF,
            F_end + tolF,
            color="grey",
            alpha=0.2,
            lw=0,
            label=f"flow ± 5 sd of SGD's stationary spread of F ({tolF:.2g})",
        )
    ax.set(ylabel=f"F − F*  (F* = {F_star:.4g})" if has_star else "F")
    ax.legend(fontsize=FONT["legend"])
    ax = axes[1]
    # distance to the flow's end point: z* where Theorem 2 applies, the flow's limit otherwise
    z_ref = th_end @ X.T  # (R, m, n)
    zd_s = np.max(np.abs(both["theta"].values[:, pos] @ X.T - z_ref[:, None]), axis=(-2, -1))
    thf = flc["theta"].values.copy()
    for t in range(1, thf.shape[1]):
        miss = np.isnan(thf[:, t]).any(axis=(-2, -1))
        thf[miss, t] = th_end[miss]
    zd_f = np.max(np.abs(thf @ X.T - z_ref[:, None]), axis=(-2, -1))
    df = pd.concat(
        [
            frame(tau_s[pos], zd_s, "label-noise SGD (run on)"),
            frame(tau_f, np.maximum(zd_f, 1e-16), "manifold flow"),
        ]
    )
    sns.lineplot(data=df, x="τ", y="value", hue="stage", estimator="median", errorbar=BAND, ax=ax)
    tolz = _nanmedian(cmp_["brute_z_tol"].values[keep])
    if np.isfinite(tolz):
        ax.axhline(
            tolz, color="grey", ls="--", lw=1, label=f"5 sd of SGD's stationary spread of z ({tolz:.2g})"
        )
    end_name = "the flow's end point (= z*, Theorem 2)" if has_star else "the flow's end point (no z*: n > d)"
    ax.set(yscale="log", ylabel="max_ji |z_ji − z_ji(flow end)|")
    ax.set_title(f"distance of the pre-activations to {end_name}", fontsize=FONT["note"])
    ax.legend(fontsize=FONT["legend"])
    ax.set(xscale="log", xlabel="flow time τ = η²σ²·step")
    _mark_handover(axes, float(fl.attrs["tau_start"]))
    for a in axes:
        a.axvline(tau_b, color="crimson", lw=0.8, ls=":")
    n_in = int(np.nansum(cmp_["brute_within_tol"].values[keep]))
    diff = cmp_["brute_sharpness_diff"].values[keep]
    diff = diff[np.isfinite(diff)]
    se = diff.std(ddof=1) / np.sqrt(diff.size) if diff.size > 1 else np.nan
    fig.suptitle(
        f"{_header(regime, cfg)}\nlabel-noise SGD run on past the hand-over vs the flow from SGD's state\n"
        f"at the hand-over, {keep.sum()} replicas (median, 10–90% band); at τ = {tau_b:.3g} (red line)\n"
        f"{n_in} of {keep.sum()} replicas are within 5 sd of SGD's stationary spread of the flow's point\n"
        f"(z and F); mean F(SGD) − F(flow) = {diff.mean():.2g} ± {se:.2g} (s.e.)",
        fontsize=FONT["title"],
    )
    _save(fig, png, pdf)
