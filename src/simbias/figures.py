"""Figures (seaborn): singular values under SGD, SGD + flow on one τ axis, neuron PCA."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from . import analysis, model, storage  # noqa: E402
from .activations import make_activation, pretty  # noqa: E402
from .sweeps import SWEEP_KEYS  # noqa: E402

BAND = ("pi", 80)  # seaborn errorbar: the band holds the middle 80% of replicas
BAND_TEXT = "line: median over replicas; band: 10th–90th percentile"

# One type size for every text of a figure (titles, labels, legends, ticks); one notation (Unicode
# symbols, as in the paper).
FONT = {"title": 11, "label": 11, "legend": 9.5, "tick": 10, "note": 9.5}


def _sub(k: int) -> str:
    """An integer as Unicode subscript digits (σ₁₀)."""
    return str(k).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))


def _theme() -> None:
    sns.set_theme(
        style="whitegrid",
        context="notebook",
        rc={
            "axes.titlesize": FONT["title"],
            "axes.labelsize": FONT["label"],
            "figure.titlesize": FONT["title"],
            "legend.fontsize": FONT["legend"],
            "legend.title_fontsize": FONT["legend"],
            "xtick.labelsize": FONT["tick"],
            "ytick.labelsize": FONT["tick"],
        },
    )


def _pretty(text: str) -> str:
    """Plain-text formulas in Unicode: z^3 -> z³, eta -> η, sigma -> σ, rho -> ρ, tau -> τ."""
    import re

    text = pretty(text)
    for word, sym in (("eta", "η"), ("sigma", "σ"), ("rho", "ρ"), ("tau", "τ")):
        text = re.sub(rf"\b{word}\b", sym, text)
    return text


def _clock_label(sgd) -> str:
    """x-axis label: flow time and the algorithm's clock (short enough for the figure width)."""
    alg = sgd.attrs.get("algorithm", "label_noise_sgd")
    clock = {"label_noise_sgd": "τ = η²σ²k", "one_sam": "τ = ηρ²k/n"}.get(alg)
    if clock is None:  # GD has no clock: only the flow has a τ axis
        return "flow time τ (from the flow's start; GD has no clock)"
    return f"flow time τ  ({clock}, k = {_algorithm(sgd)} step)"


def _legend_outside(ax, title: str | None = None) -> None:
    """The legend to the right of the axes, one column, so it covers no data and keeps its groups."""
    if ax.get_legend() is not None or ax.get_legend_handles_labels()[0]:
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(
            handles,
            labels,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            ncol=1,
            title=title,
            frameon=False,
            borderaxespad=0.0,
        )


def _integer_axis(ax, axis: str = "y") -> None:
    """Ticks only at integers (ranks, counts)."""
    from matplotlib.ticker import MaxNLocator

    getattr(ax, f"{axis}axis").set_major_locator(MaxNLocator(integer=True))


def _plain_ticks(ax, axis: str = "y") -> None:
    """Tick labels to 3 significant digits each (4e-12, not 4 under a shared offset "1e−12")."""
    from matplotlib.ticker import FuncFormatter

    getattr(ax, f"{axis}axis").set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))


def _integer_band(v) -> tuple[float, float]:
    """10th–90th percentile band made of replica values (integers stay integers)."""
    return float(np.percentile(v, 10, method="lower")), float(np.percentile(v, 90, method="higher"))


def _header(regime: str, cfg: dict) -> str:
    act = make_activation(cfg["activation"])
    return (
        f"{regime}: m = {cfg['m']}, d = {cfg['d']}, n = {cfg['n']}, η = {cfg['eta']:g}, σ = {cfg['sigma']:g}, "
        f"φ(z) = {_pretty(act.describe())}"
    )


def _kept(sgd) -> tuple[np.ndarray, str]:
    keep = ~sgd["diverged"].values.astype(bool)
    R = keep.size
    if keep.all():
        return keep, f"{R} replicas"
    return keep, f"{keep.sum()} of {R} replicas ({R - keep.sum()} diverged, left out)"


def _mark_handover(axes, tau: float) -> None:
    """A dotted vertical line on every panel where SGD hands over to the flow."""
    for ax in axes:
        ax.axvline(tau, color="k", lw=0.8, ls=":")
    axes[0].text(tau, axes[0].get_ylim()[1], " SGD → flow", va="top", fontsize=FONT["note"])


def _handover_note(ax, cmp_, keep: np.ndarray) -> None:
    """The hand-over measured (medians over replicas): SGD's loss, how far the retraction
    onto M moves θ and Z, F before and after; a warning when that move is not small
    against the flow's own displacement (comparison.nc's handover_* variables)."""
    from .stages import HANDOVER_SMALL

    def med(name: str) -> float:
        return float(np.nanmedian(cmp_[name].values[keep]))

    ratio = med("handover_move_ratio")
    text = (
        f"hand-over (median): SGD's loss {med('loss_sgd_end'):.2g}, F {med('sharpness_handover_before'):.4g} → "
        f"{med('sharpness_handover_after'):.4g}\nretraction onto M moves θ by {med('handover_theta_move'):.2g} "
        f"(max|Δz| {med('handover_z_move'):.2g}) = {100 * ratio:.2g}% of the flow's own travel"
    )
    if ratio > HANDOVER_SMALL:
        text += (
            "\nNOT small: the flow starts visibly away from SGD's last iterate (large ησ: SGD sits far off M)"
        )
    ax.text(
        0.01,
        0.02,
        text,
        transform=ax.transAxes,
        fontsize=FONT["note"],
        va="bottom",
        color="crimson" if ratio > HANDOVER_SMALL else "k",
        bbox={"facecolor": "white", "alpha": 0.85, "lw": 0},
        zorder=5,
    )


def _meaningful_ranks(cfg: dict) -> int:
    """Z = ΘXᵀ has rank ≤ min(m, n, d): singular values past that are exactly 0."""
    return min(cfg["m"], cfg["n"], cfg["d"])


def _long(values: np.ndarray, x: np.ndarray, xname: str, ranks: range, keep: np.ndarray) -> pd.DataFrame:
    """(replica, record, rank) normalised singular values -> long-form frame for seaborn."""
    norm = values / values[..., :1]
    frames = []
    for k in ranks:
        v = norm[keep][:, :, k - 1]
        frames.append(
            pd.DataFrame(
                {xname: np.tile(x, v.shape[0]), "value": v.ravel(), "singular value": f"σ{_sub(k)}/σ₁"}
            )
        )
    return pd.concat(frames, ignore_index=True)


def _sv_lines(ax, df: pd.DataFrame, x: str, style: str | None = None) -> str:
    """σ_k/σ_1 lines, one colour per k (ordered palette); bands only for up to three ratios.

    Returns what the band shows, for the title.
    """
    hues = list(dict.fromkeys(df["singular value"]))
    banded = len(hues) <= 3
    sns.lineplot(
        data=df,
        x=x,
        y="value",
        hue="singular value",
        hue_order=hues,
        palette=sns.color_palette("deep" if banded else "viridis", len(hues)),
        style=style,
        estimator="median",
        errorbar=BAND if banded else None,
        ax=ax,
    )
    _legend_outside(ax)
    return BAND_TEXT if banded else f"lines: median over replicas ({len(hues)} ratios: no bands)"


def singular_values(regime, cfg, inputs, png, pdf) -> None:
    """σ_k(Z)/σ_1(Z) against SGD step: replica median and 10–90% band."""
    sgd = storage.open_dataset(inputs["sgd"])
    keep, note = _kept(sgd)
    step = sgd["step"].values
    pos = step > 0
    K = _meaningful_ranks(cfg)
    alg = _algorithm(sgd)
    xname = f"{'GD' if sgd.attrs.get('algorithm') == 'gd' else alg} step k"
    df = _long(sgd["feature_sv"].values[:, pos], step[pos], xname, range(2, K + 1), keep)
    fig, ax = plt.subplots(figsize=(9.5, 5.2))
    what = _sv_lines(ax, df, xname)
    ax.set(xscale="log", yscale="log", ylabel="σₖ(Z) / σ₁(Z)   (Z = ΘXᵀ)")
    ax.set_title(f"{_header(regime, cfg)}\n{alg}, {note}\n{what}")
    per_step = float(sgd["tau"].values[-1] / step[-1]) if step[-1] > 0 else float("nan")
    if np.isfinite(per_step) and per_step > 0:  # GD has no clock: no τ axis
        top = ax.secondary_xaxis("top", functions=(lambda k: k * per_step, lambda t: t / per_step))
        top.set_xlabel(_clock_label(sgd))
    _save(fig, png, pdf)


def _algorithm(sgd) -> str:
    """Readable name of the algorithm that wrote sgd.nc."""
    return {"label_noise_sgd": "label-noise SGD", "gd": "gradient descent (control)", "one_sam": "1-SAM"}.get(
        sgd.attrs.get("algorithm", "label_noise_sgd"), "label-noise SGD"
    )


def _fill_end(a: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Records after a replica stopped are NaN: fill them with its end state (flow.nc's *_end)."""
    out = a.copy()
    for t in range(1, out.shape[1]):
        miss = np.isnan(out[:, t])
        out[:, t][miss] = end[miss]
    return out


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
    flat = th_s.reshape((R * T,) + th_s.shape[2:])
    ok = np.isfinite(flat).all(axis=(1, 2))
    g_s = np.full(R * T, np.nan)
    g_s[ok] = model.norm(np, model.riemannian_grad(np, act, flat[ok], X, w))
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

    fig, axes = plt.subplots(3, 1, figsize=(10.5, 11), sharex=True)
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
        ax.set(yscale="log", ylabel="sharpness F")
        ax.text(0.01, 0.04, "no F*: Theorem 2 does not apply", transform=ax.transAxes, fontsize=FONT["note"])
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
    if np.isfinite(bound).any():
        tb = float(fl.attrs["tau_start"]) + np.nanmedian(bound)
        ax.axvline(tb, color="crimson", lw=1.2, ls="--", label=f"Theorem 3 bound\n(median) τ = {tb:.3g}")
    else:
        reason = str(cmp_.attrs.get("theorem3_reason", ""))
        ax.text(
            0.01,
            0.04,
            f"Theorem 3 bound not applicable: {reason}",
            transform=ax.transAxes,
            fontsize=FONT["note"],
        )
    ax.set(yscale="log", ylabel="‖∇_M F‖  (floor 1e-16)")
    _legend_outside(ax)
    ax = axes[2]
    K = _meaningful_ranks(cfg)
    ds_ = _long(sgd["feature_sv"].values[:, pos], tau_s[pos], "τ", range(2, K + 1), keep)
    df_ = _long(_fill_end(fl["feature_sv"].values, sv_end), tau_f, "τ", range(2, K + 1), keep)
    ds_["stage"], df_["stage"] = alg, "manifold flow"
    df = pd.concat([ds_, df_])
    df["value"] = np.maximum(df["value"], floor)
    what = _sv_lines(ax, df, "τ", style="stage")
    ax.set(xscale="log", yscale="log", ylabel="σₖ(Z) / σ₁(Z)  (floor 1e-16)", xlabel=_clock_label(sgd))
    _mark_handover(axes, float(fl.attrs["tau_start"]))
    _handover_note(axes[0], cmp_, keep)
    caveat = ""
    if not int(cmp_.attrs.get("theorem2_applicable", 1)):
        caveat = f"\ntheory not applicable: {cmp_.attrs.get('theorem2_reason', '')}"
    elif not int(cmp_.attrs.get("theorem3_applicable", 1)):
        caveat = f"\nTheorem 3 not applicable: {cmp_.attrs.get('theorem3_reason', '')}"
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

    fig, axes = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
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
    K = _meaningful_ranks(cfg)
    df = _long(sgd["feature_sv"].values[:, pos], step[pos], "GD step", range(2, K + 1), keep)
    df["value"] = np.maximum(df["value"], 1e-16)
    sns.lineplot(
        data=df, x="GD step", y="value", hue="singular value", estimator="median", errorbar=BAND, ax=axes[2]
    )
    axes[2].set(xscale="log", yscale="log", ylabel="σₖ(Z) / σ₁(Z)")
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
        f"no flow: without label noise there is no drift along M; {rank_note}",
        fontsize=FONT["title"],
    )
    _save(fig, png, pdf)


def neuron_pca(regime, cfg, inputs, png, pdf) -> None:
    """Neurons' feature vectors (rows of Z) along SGD and the flow, in the plane of the
    first two principal components of the final feature vectors (paper Figure 1b), coloured by
    the cluster each neuron ends in."""
    data = storage.open_dataset(inputs["data"])
    sgd = storage.open_dataset(inputs["sgd"])
    fl = storage.open_dataset(inputs["flow"])
    keep, _ = _kept(sgd)
    if not keep.any():  # the regime failed: say so instead of drawing nothing
        fig, ax = plt.subplots(figsize=(7, 6))
        ax.axis("off")
        ax.text(
            0.5, 0.5, f"all {keep.size} replicas diverged during SGD:\nno neuron path to show", ha="center"
        )
        ax.set_title(_header(regime, cfg), fontsize=FONT["title"])
        _save(fig, png, pdf)
        return
    r = int(np.flatnonzero(keep)[0])
    X = data["x"].values
    Zs = sgd["theta"].values[r] @ X.T  # (T, m, n)
    Zf = fl["theta"].values[r] @ X.T
    Zf = Zf[np.isfinite(Zf).all(axis=(1, 2))]
    Zend = fl["theta_end"].values[r] @ X.T
    mean, basis = analysis.pca_basis(Zend)
    xlabel = "PC 1 of the neurons' final feature vectors"
    if np.linalg.norm(Zend - mean) < 1e-8:  # all neurons coincide at the end: use the whole path
        mean, basis = analysis.pca_basis(np.concatenate([Zs.reshape(-1, Zs.shape[-1]), Zend]))
        xlabel = "PC 1 of the feature vectors along the whole path (all neurons meet at the end)"
    P = lambda Z: (Z - mean) @ basis.T  # noqa: E731
    ps, pf, pe = P(Zs), P(Zf), P(Zend)
    m = Zs.shape[1]
    labels = analysis.cluster_labels(Zend)
    k = int(labels.max()) + 1
    colors = sns.color_palette("tab10" if k <= 10 else "husl", k)
    alg = _algorithm(sgd)
    fig, ax = plt.subplots(figsize=(10, 6.5))
    for j in range(m):
        c = colors[labels[j]]
        ax.plot(ps[:, j, 0], ps[:, j, 1], color=c, lw=0.8, alpha=0.6)
        ax.plot(pf[:, j, 0], pf[:, j, 1], color=c, lw=1.0, ls="--", alpha=0.8)
        ax.scatter(ps[0, j, 0], ps[0, j, 1], color=c, marker="o", facecolors="none", s=25)
    ax.scatter(ps[-1, :, 0], ps[-1, :, 1], c="k", marker="s", s=12, label=f"end of {alg}", zorder=3)
    sizes = np.bincount(labels)
    for c_ in range(k):  # one large marker per final cluster, its size in the legend
        j = np.flatnonzero(labels == c_)
        ax.scatter(
            pe[j, 0],
            pe[j, 1],
            color=colors[c_],
            edgecolors="k",
            s=140,
            zorder=4,
            label=f"cluster {c_ + 1}: {sizes[c_]} neuron{'s' if sizes[c_] > 1 else ''}",
        )
    ax.scatter([], [], marker="o", facecolors="none", edgecolors="grey", label="initial")
    ax.plot([], [], color="grey", label=f"{alg} path")
    ax.plot([], [], color="grey", ls="--", label="flow path")
    ax.set(xlabel=xlabel, ylabel="PC 2")
    _legend_outside(ax)
    ax.set_title(
        f"{_header(regime, cfg)}\nreplica {r}: the {m} neurons' feature vectors z_j = Xθ_j ∈ ℝⁿ end in {k} "
        f"cluster{'s' if k > 1 else ''}\n(colour: the cluster a neuron ends in; large dots: the flow's end)"
    )
    _save(fig, png, pdf)


def structure(regime, cfg, inputs, png, pdf) -> None:
    """Effective rank of Z and the number of neuron clusters along SGD and the flow."""
    sgd = storage.open_dataset(inputs["sgd"])
    cmp_ = storage.open_dataset(inputs["comparison"])
    keep, note = _kept(sgd)
    frames = []
    # flow records up to the first one after every replica has stopped
    raw = cmp_["feature_rank_flow"].values
    n_f = int(np.max(np.nonzero((raw >= 0).any(axis=0))[0], initial=0)) + 2
    cmp_ = cmp_.isel(flow_record=slice(0, n_f))
    for stage, label_ in (("sgd", _algorithm(sgd)), ("flow", "manifold flow")):
        tau = cmp_[f"{stage}_tau"].values
        for var, what in (("feature_rank", "effective rank of Z"), ("cluster_count", "neuron clusters")):
            v = cmp_[f"{var}_{stage}"].values.astype(float)
            v[v < 0] = np.nan  # no record (diverged, or the flow had stopped)
            if stage == "flow":
                v = _fill_end(v, cmp_[f"{var}_flow_end"].values.astype(float))
            v = v[keep]
            pos = tau > 0
            frames.append(
                pd.DataFrame(
                    {
                        "τ": np.tile(tau[pos], v.shape[0]),
                        "value": v[:, pos].ravel(),
                        "stage": label_,
                        "what": what,
                    }
                )
            )
    df = pd.concat(frames, ignore_index=True)
    fig, axes = plt.subplots(2, 1, figsize=(10, 7.5), sharex=True)
    for ax, what in zip(axes, ("effective rank of Z", "neuron clusters"), strict=True):
        sns.lineplot(
            data=df[df["what"] == what],
            x="τ",
            y="value",
            hue="stage",
            estimator=analysis.lower_median,
            errorbar=_integer_band,
            ax=ax,
        )
        ax.set(xscale="log", ylabel=what)
        _integer_axis(ax)
        _legend_outside(ax)
    axes[0].set_ylabel(f"effective rank of Z\n(σₖ > {analysis.RANK_REL_THRESHOLD:g}·σ₁)")
    axes[1].set_ylabel(f"neuron clusters\n(‖z_j − z_l‖ ≤ {analysis.CLUSTER_REL_TOL:g}·max‖z‖)")
    axes[1].set_xlabel(_clock_label(sgd))
    _mark_handover(axes, float(cmp_["sgd_tau"].values[-1]))
    fig.suptitle(
        f"{_header(regime, cfg)}\n{note}; line: median replica (the lower middle one, an integer); "
        "band: 10th–90th percentile\n(the flow starts from SGD's last iterate retracted onto M, which moves Z "
        "by about √loss: counts can jump there)"
    )
    _save(fig, png, pdf)


def gd_structure(regime, cfg, inputs, png, pdf) -> None:
    """The GD control's effective rank of Z and neuron clusters against its steps (no flow)."""
    sgd = storage.open_dataset(inputs["sgd"])
    cmp_ = storage.open_dataset(inputs["comparison"])
    keep, note = _kept(sgd)
    step = sgd["step"].values
    pos = step > 0
    fig, axes = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for ax, var, label_ in (
        (axes[0], "feature_rank_sgd", f"effective rank of Z\n(σ_k > {analysis.RANK_REL_THRESHOLD:g}·σ_1)"),
        (
            axes[1],
            "cluster_count_sgd",
            f"neuron clusters\n(‖z_j − z_k‖ ≤ {analysis.CLUSTER_REL_TOL:g}·max‖z‖)",
        ),
    ):
        v = cmp_[var].values.astype(float)[keep][:, pos]
        v[v < 0] = np.nan
        df = pd.DataFrame({"GD step": np.tile(step[pos], v.shape[0]), "value": v.ravel()})
        sns.lineplot(data=df, x="GD step", y="value", estimator="median", errorbar=BAND, ax=ax)
        ax.set(xscale="log", ylabel=label_)
    fig.suptitle(
        f"{_header(regime, cfg)}\ngradient descent (control), {note}: median and 10–90% band\n"
        "no flow: without label noise there is no drift along M, GD keeps its structure on M",
        fontsize=FONT["title"],
    )
    _save(fig, png, pdf)


# a phase diagram writes each cell's value in it up to this many cells (12 x 12); past that the
# colours alone, and the tick labels thinned to what fits
PHASE_ANNOTATE_MAX = 144


def phase_diagram(base: str, table_csv: str, png: str, pdf: str) -> None:
    """Final effective rank and sharpness gap (or F) over the first two sweep axes, from the
    sweep's table (one row per grid point, :func:`simbias.stages.sweep_table`)."""
    _theme()
    sns.set_style("white")
    table = pd.read_csv(table_csv)
    axes_keys = [c for c in table.columns if c in SWEEP_KEYS]
    xk = axes_keys[0]
    yk = axes_keys[1] if len(axes_keys) > 1 else None
    gap_label = (
        "F at the flow's end\n(median; no F*)"
        if table["gap_is_F"].all()
        else "F − F* at the flow's end\n(median)"
    )
    titles = {
        "rank_sgd": "effective rank of Z at SGD's end\n(median replica)",
        "rank_flow": "effective rank of Z at the flow's end\n(median replica)",
        "gap": gap_label,
    }
    fig, axs = plt.subplots(1, 3, figsize=(17, 5))
    for ax, col, fmt in zip(axs, list(titles), ["d", "d", ".6g"], strict=True):
        title = titles[col]
        if yk is None:
            sns.barplot(data=table, x=xk, y=col, ax=ax)
            if col != "gap":
                _integer_axis(ax)
        else:
            grid = table.pivot_table(index=yk, columns=xk, values=col, dropna=False)  # failed points: blank
            # NaN cells (failed points) are masked by the heatmap, so their annotation is never drawn
            annot = grid.fillna(0).round().astype(int) if fmt == "d" else grid
            lo, hi = np.nanmin(grid.values), np.nanmax(grid.values)
            scale = max(abs(lo), abs(hi), 1e-300)
            # F − F* within round-off of 0 at every point that ran (the Theorem 2 minimum reached)
            g = table["gap"].dropna()
            roundoff = col == "gap" and g.size > 0 and bool((g.abs() <= table["gap_floor"][g.index]).all())
            if hi - lo <= 1e-6 * scale or roundoff:  # equal up to round-off: one colour, not amplified noise
                same = "the same at every grid point" if hi == lo else "equal across the grid to 1e-6"
                lo, hi = lo - scale, hi + scale
                if roundoff:  # the colour scale spans the round-off band: one colour
                    same = f"0 to round-off everywhere: |F − F*| ≤ {GAP_FLOOR_REL:g}·F*"
                    lo, hi = -float(table["gap_floor"].max()), float(table["gap_floor"].max())
                title += f"\n({same})"
            few = grid.size <= PHASE_ANNOTATE_MAX  # numbers in the cells only while they can be read
            grid = grid.set_axis([f"{v:.3g}" for v in grid.index], axis=0)
            grid = grid.set_axis([f"{v:.3g}" for v in grid.columns], axis=1)
            sns.heatmap(
                grid,
                annot=annot.values if few else False,
                fmt=fmt,
                ax=ax,
                xticklabels="auto",
                yticklabels="auto",
                cmap="viridis",
                vmin=lo,
                vmax=hi,
                cbar_kws={"label": titles[col].split("\n")[0]},
            )
            if fmt == "d":
                _integer_axis(ax.collections[0].colorbar.ax)
            else:  # each tick its own value: a shared "1e−12" above the bar ran into the title
                _plain_ticks(ax.collections[0].colorbar.ax)
            for i, j in zip(*np.nonzero(np.isnan(grid.values)), strict=True):
                ax.text(j + 0.5, i + 0.5, "failed", ha="center", va="center", fontsize=FONT["note"])
            ax.invert_yaxis()
            ax.set(xlabel=_pretty(xk), ylabel=_pretty(yk))
        ax.set_title(title)
    note = f"; {int(table['diverged'].sum())} diverged replicas left out" if table["diverged"].sum() else ""
    fig.suptitle(f"sweep {base}: {len(table)} grid points over {', '.join(map(_pretty, axes_keys))}{note}")
    _save(fig, png, pdf)


def _save(fig, png: str, pdf: str) -> None:
    fig.tight_layout()
    for path in (png, pdf):
        with storage.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=130, format=path.rsplit(".", 1)[-1])
    plt.close(fig)


KINDS = {
    "singular_values": singular_values,
    "trajectory": trajectory,
    "neuron_pca": neuron_pca,
    "structure": structure,
}


def draw(kind: str, regime: str, cfg: dict, inputs: dict, png: str, pdf: str) -> None:
    _theme()
    if kind in ("trajectory", "structure") and cfg["algorithm"]["name"] == "gd":  # the control has no flow
        (gd_trajectory if kind == "trajectory" else gd_structure)(regime, cfg, inputs, png, pdf)
        return
    KINDS[kind](regime, cfg, inputs, png, pdf)


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
    df = _long(both["feature_sv"].values[:, pos], step[pos], "SGD step", range(2, K + 1), keep)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    sns.lineplot(
        data=df, x="SGD step", y="value", hue="singular value", estimator="median", errorbar=BAND, ax=ax
    )
    ax.set(xscale="log", yscale="log", ylabel="σₖ(Z) / σ₁(Z)  (Z = ΘXᵀ)")
    ax.axhline(1e-2, color="grey", lw=0.8, ls="--")
    k_h = int(sgd["step"].values[-1])
    ax.axvline(k_h, color="k", lw=0.8, ls=":")
    ax.text(
        k_h,
        ax.get_ylim()[0],
        " fig1a hands over to the flow here;\n SGD goes on (fresh noise streams)",
        va="bottom",
        fontsize=FONT["note"],
    )
    end = np.median(
        both["feature_sv"].values[keep, -1, 1:K] / both["feature_sv"].values[keep, -1, :1], axis=0
    )
    per_step = cfg["eta"] ** 2 * cfg["sigma"] ** 2
    top = ax.secondary_xaxis("top", functions=(lambda k: k * per_step, lambda t: t / per_step))
    top.set_xlabel("flow time τ = η²σ²·step", fontsize=FONT["note"])
    ax.set_title(
        f"{_header(regime, cfg)}\nlabel-noise SGD alone (no flow), {note}: median and 10–90% band\n"
        f"median at step {step[-1]:.3g}: " + ", ".join(f"σ{k + 2}/σ1 = {v:.2g}" for k, v in enumerate(end)),
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
    tolF = float(np.nanmedian(cmp_["brute_sharpness_tol"].values[keep]))
    F_end = float(np.nanmedian(cmp_["brute_sharpness_gap_flow"].values[keep]))
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
    tolz = float(np.nanmedian(cmp_["brute_z_tol"].values[keep]))
    ax.axhline(tolz, color="grey", ls="--", lw=1, label=f"5 sd of SGD's stationary spread of z ({tolz:.2g})")
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


KINDS.update(sgd_alone=sgd_alone, brute_force=brute_force_overlay)  # regimes with brute_force.steps > 0
