"""Figures (seaborn): singular values under SGD, SGD + flow on one τ axis, neuron PCA."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from . import analysis, model, storage  # noqa: E402
from .activations import make_activation  # noqa: E402

BAND = ("pi", 80)  # seaborn errorbar: the band holds the middle 80% of replicas


def _header(regime: str, cfg: dict) -> str:
    act = make_activation(cfg["activation"])
    return (
        f"{regime}: m={cfg['m']}, d={cfg['d']}, n={cfg['n']}, η={cfg['eta']:g}, σ={cfg['sigma']:g}, "
        f"φ(z) = {act.describe()}"
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
    axes[0].text(tau, axes[0].get_ylim()[1], " SGD → flow", va="top", fontsize=8)


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
        fontsize=7,
        va="bottom",
        color="crimson" if ratio > HANDOVER_SMALL else "k",
        bbox={"facecolor": "white", "alpha": 0.85, "lw": 0},
        zorder=5,
    )
    if ax.get_legend() is not None:
        ax.legend(loc="center right", fontsize=7)


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
            pd.DataFrame({xname: np.tile(x, v.shape[0]), "value": v.ravel(), "singular value": f"σ{k}/σ1"})
        )
    return pd.concat(frames, ignore_index=True)


def singular_values(regime, cfg, inputs, png, pdf) -> None:
    """σ_k(Z)/σ_1(Z) against SGD step: replica median and 10–90% band."""
    sgd = storage.open_dataset(inputs["sgd"])
    keep, note = _kept(sgd)
    step = sgd["step"].values
    pos = step > 0
    K = _meaningful_ranks(cfg)
    alg = _algorithm(sgd)
    xname = "GD step" if alg == "gradient descent (control)" else f"{alg} step"
    df = _long(sgd["feature_sv"].values[:, pos], step[pos], xname, range(2, K + 1), keep)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    sns.lineplot(data=df, x=xname, y="value", hue="singular value", estimator="median", errorbar=BAND, ax=ax)
    ax.set(xscale="log", yscale="log", ylabel="σ_k(Z) / σ_1(Z)  (Z = ΘXᵀ)")
    ax.set_title(f"{_header(regime, cfg)}\n{alg}, {note}: median and 10–90% band", fontsize=9)
    per_step = float(sgd["tau"].values[-1] / step[-1]) if step[-1] > 0 else float("nan")
    if np.isfinite(per_step) and per_step > 0:  # GD has no clock: no τ axis
        top = ax.secondary_xaxis("top", functions=(lambda k: k * per_step, lambda t: t / per_step))
        top.set_xlabel(f"flow time τ ({sgd.attrs.get('clock', 'τ = η²σ²·step').split(' (')[0]})", fontsize=8)
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

    def stage_frame(tau, vals, stage):
        v = vals[keep]
        return pd.DataFrame({"τ": np.tile(tau, v.shape[0]), "value": v.ravel(), "stage": stage})

    fig, axes = plt.subplots(3, 1, figsize=(8, 10), sharex=True)
    ax = axes[0]
    shift = F_star if has_star else 0.0
    df = pd.concat(
        [
            stage_frame(tau_s[pos], F_s - shift, _algorithm(sgd)),
            stage_frame(tau_f, F_f - shift, "manifold flow"),
        ]
    )
    sns.lineplot(data=df, x="τ", y="value", hue="stage", estimator="median", errorbar=BAND, ax=ax)
    if has_star:  # off M (early SGD) F can be below F*: symlog shows the sign
        ax.set_yscale("symlog", linthresh=1e-14)
        ax.axhline(0, color="grey", lw=0.6)
        lo, hi = ax.get_ylim()
        decades = [10.0**e for e in range(-12, 4, 4)]
        ax.set_yticks([-t for t in decades[::-1] if -t >= lo] + [0] + [t for t in decades if t <= hi])
        ax.set_ylabel(f"F − F*  (F* = {F_star:.4g}; symlog)")
    else:
        ax.set(yscale="log", ylabel="F (no F*: Theorem 2 does not apply)")
    ax = axes[1]
    df = pd.concat(
        [
            stage_frame(tau_s[pos], np.maximum(g_s, floor), _algorithm(sgd)),
            stage_frame(tau_f, np.maximum(g_f, floor), "manifold flow"),
        ]
    )
    sns.lineplot(data=df, x="τ", y="value", hue="stage", estimator="median", errorbar=BAND, ax=ax)
    eps = cfg["theory"]["epsilon"]
    ax.axhline(eps, color="grey", lw=0.8, ls=":", label=f"ε = {eps:g}")
    bound = cmp_["tau_eps_theorem3_bound"].values[keep]
    if np.isfinite(bound).any():
        tb = float(fl.attrs["tau_start"]) + np.nanmedian(bound)
        ax.axvline(tb, color="crimson", lw=1.2, ls="--", label=f"Theorem 3 bound (median) τ = {tb:.3g}")
    else:
        reason = str(cmp_.attrs.get("theorem3_reason", ""))
        ax.text(0.01, 0.04, f"Theorem 3 bound not applicable: {reason}", transform=ax.transAxes, fontsize=7)
    ax.set(yscale="log", ylabel="‖∇_M F‖ (Riemannian gradient)")
    ax.legend(fontsize=7)
    ax = axes[2]
    K = _meaningful_ranks(cfg)
    ds_ = _long(sgd["feature_sv"].values[:, pos], tau_s[pos], "τ", range(2, K + 1), keep)
    df_ = _long(_fill_end(fl["feature_sv"].values, sv_end), tau_f, "τ", range(2, K + 1), keep)
    ds_["stage"], df_["stage"] = _algorithm(sgd), "flow"
    df = pd.concat([ds_, df_])
    df["value"] = np.maximum(df["value"], floor)
    sns.lineplot(
        data=df,
        x="τ",
        y="value",
        hue="singular value",
        style="stage",
        estimator="median",
        errorbar=BAND,
        ax=ax,
    )
    ax.set(
        xscale="log",
        yscale="log",
        ylabel="σ_k(Z) / σ_1(Z)",
        xlabel=f"flow time τ ({_algorithm(sgd)}: {sgd.attrs.get('clock', 'tau = eta^2 sigma^2 step').split(' (')[0]})",
    )
    ax.legend(fontsize=7, ncol=2)
    _mark_handover(axes, float(fl.attrs["tau_start"]))
    _handover_note(axes[0], cmp_, keep)
    caveat = ""
    if not int(cmp_.attrs.get("theorem2_applicable", 1)):
        caveat = f"\ntheory not applicable: {cmp_.attrs.get('theorem2_reason', '')}"
    elif not int(cmp_.attrs.get("theorem3_applicable", 1)):
        caveat = f"\nTheorem 3 not applicable: {cmp_.attrs.get('theorem3_reason', '')}"
    fig.suptitle(
        f"{_header(regime, cfg)}\n{_algorithm(sgd)} continued by the Riemannian flow of F on M; "
        f"{note}, median and 10–90% band\n"
        "(a replica that stopped at ‖∇_M F‖ ≤ tol is drawn at its end state; lower panels floored at 1e-16)"
        + caveat,
        fontsize=9,
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
    axes[2].set(xscale="log", yscale="log", ylabel="σ_k(Z) / σ_1(Z)")
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
            fontsize=8,
        )
        rank_note = f"rank on arrival at M (median) {np.median(ranks):g}, at the end {np.median(final):g}"
    else:
        rank_note = "GD did not reach M (loss ≤ 1e-12) within its steps"
    fig.suptitle(
        f"{_header(regime, cfg)}\ngradient descent (control), {note}: median and 10–90% band\n"
        f"no flow: without label noise there is no drift along M; {rank_note}",
        fontsize=9,
    )
    _save(fig, png, pdf)


def neuron_pca(regime, cfg, inputs, png, pdf) -> None:
    """Neurons' feature vectors (rows of Z) along SGD and the flow, in the plane of the
    first two principal components of the final feature vectors (paper Figure 1b)."""
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
        ax.set_title(_header(regime, cfg), fontsize=9)
        _save(fig, png, pdf)
        return
    r = int(np.flatnonzero(keep)[0])
    X = data["x"].values
    Zs = sgd["theta"].values[r] @ X.T  # (T, m, n)
    Zf = fl["theta"].values[r] @ X.T
    Zf = Zf[np.isfinite(Zf).all(axis=(1, 2))]
    Zend = fl["theta_end"].values[r] @ X.T
    mean, basis = analysis.pca_basis(Zend)
    if np.linalg.norm(Zend - mean) < 1e-8:  # all neurons coincide at the end: use the whole path
        mean, basis = analysis.pca_basis(np.concatenate([Zs.reshape(-1, Zs.shape[-1]), Zend]))
    P = lambda Z: (Z - mean) @ basis.T  # noqa: E731
    ps, pf, pe = P(Zs), P(Zf), P(Zend)
    m = Zs.shape[1]
    colors = sns.color_palette("husl", m)
    fig, ax = plt.subplots(figsize=(7, 6))
    for j in range(m):
        ax.plot(ps[:, j, 0], ps[:, j, 1], color=colors[j], lw=0.9, alpha=0.8)
        ax.plot(pf[:, j, 0], pf[:, j, 1], color=colors[j], lw=0.9, ls="--", alpha=0.8)
        ax.scatter(ps[0, j, 0], ps[0, j, 1], color=colors[j], marker="o", facecolors="none", s=25)
    ax.scatter(ps[-1, :, 0], ps[-1, :, 1], c="k", marker="s", s=10, label="end of SGD", zorder=3)
    ax.scatter(pe[:, 0], pe[:, 1], c="k", marker="x", s=40, label="end of flow", zorder=4)
    ax.scatter([], [], marker="o", facecolors="none", edgecolors="grey", label="initial")
    ax.plot([], [], color="grey", label="SGD path")
    ax.plot([], [], color="grey", ls="--", label="flow path")
    ax.set(xlabel="PC 1 of the final neuron feature vectors", ylabel="PC 2")
    ax.legend(fontsize=8)
    ax.set_title(
        f"{_header(regime, cfg)}\nreplica {r}: each colour is one neuron's feature vector z_j = Xθ_j ∈ R^n",
        fontsize=9,
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
    fig, axes = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for ax, what in zip(axes, ("effective rank of Z", "neuron clusters"), strict=True):
        sns.lineplot(
            data=df[df["what"] == what],
            x="τ",
            y="value",
            hue="stage",
            estimator="median",
            errorbar=BAND,
            ax=ax,
        )
        ax.set(xscale="log", ylabel=what)
    axes[0].set_ylabel(f"effective rank of Z\n(σ_k > {analysis.RANK_REL_THRESHOLD:g}·σ_1)")
    axes[1].set_ylabel(f"neuron clusters\n(‖z_j − z_k‖ ≤ {analysis.CLUSTER_REL_TOL:g}·max‖z‖)")
    axes[1].set_xlabel("flow time τ")
    _mark_handover(axes, float(cmp_["sgd_tau"].values[-1]))
    fig.suptitle(
        f"{_header(regime, cfg)}\n{note}: median and 10–90% band over replicas\n"
        "(the flow starts from SGD's last iterate retracted onto M, which moves Z by about √loss:"
        " counts can jump there)",
        fontsize=9,
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
        fontsize=9,
    )
    _save(fig, png, pdf)


def phase_diagram(base: str, comparison_csvs: list[str], cfgs: dict[str, dict], png: str, pdf: str) -> None:
    """Final effective rank and sharpness gap (or F) over the first two sweep axes."""
    sns.set_theme(style="white", context="notebook")
    rows = []
    for path in comparison_csvs:
        df = pd.read_csv(path)
        regime = df["regime"].iloc[0]
        point = cfgs[regime]["sweep_of"]["point"]
        ok = ~df["sgd_diverged"].astype(bool)
        gap = df.loc[ok, "sharpness_gap"]
        rows.append(
            {
                **point,
                "effective rank at SGD's end (median)": df.loc[ok, "feature_rank_sgd_end"].median(),
                "effective rank at the flow's end (median)": df.loc[ok, "feature_rank_flow_end"].median(),
                "gap": gap.median() if gap.notna().any() else df.loc[ok, "sharpness_flow_end"].median(),
                "gap_is_F": not gap.notna().any(),
                "diverged": int((~ok).sum()),
            }
        )
    table = pd.DataFrame(rows)
    axes_keys = next(iter(cfgs.values()))["sweep_of"]["axes"]
    xk = axes_keys[0]
    yk = axes_keys[1] if len(axes_keys) > 1 else None
    gap_label = (
        "F at the flow's end (no F*)" if table["gap_is_F"].all() else "F − F* at the flow's end (median)"
    )
    fig, axs = plt.subplots(1, 3, figsize=(16, 4.5))
    cols = ["effective rank at SGD's end (median)", "effective rank at the flow's end (median)", "gap"]
    for ax, col, fmt in zip(axs, cols, [".1f", ".1f", ".6g"], strict=True):
        title = col if col != "gap" else gap_label
        if yk is None:
            sns.barplot(data=table, x=xk, y=col, ax=ax)
        else:
            grid = table.pivot_table(index=yk, columns=xk, values=col, dropna=False)  # failed points: blank
            lo, hi = np.nanmin(grid.values), np.nanmax(grid.values)
            scale = max(abs(lo), abs(hi), 1e-300)
            if hi - lo <= 1e-6 * scale:  # equal up to round-off: one colour, not amplified noise
                same = "the same at every grid point" if hi == lo else "equal across the grid to 1e-6"
                lo, hi = lo - scale, hi + scale
                title += f"\n({same})"
            sns.heatmap(grid, annot=True, fmt=fmt, ax=ax, cmap="viridis", cbar=False, vmin=lo, vmax=hi)
            ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
    note = f"; {int(table['diverged'].sum())} diverged replicas left out" if table["diverged"].sum() else ""
    fig.suptitle(f"sweep {base}: {len(table)} grid points over {', '.join(axes_keys)}{note}", fontsize=10)
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
    sns.set_theme(style="whitegrid", context="notebook")
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
    ax.set(xscale="log", yscale="log", ylabel="σ_k(Z) / σ_1(Z)  (Z = ΘXᵀ)")
    ax.axhline(1e-2, color="grey", lw=0.8, ls="--")
    k_h = int(sgd["step"].values[-1])
    ax.axvline(k_h, color="k", lw=0.8, ls=":")
    ax.text(
        k_h,
        ax.get_ylim()[0],
        " fig1a hands over to the flow here;\n SGD goes on (fresh noise streams)",
        va="bottom",
        fontsize=7,
    )
    end = np.median(
        both["feature_sv"].values[keep, -1, 1:K] / both["feature_sv"].values[keep, -1, :1], axis=0
    )
    per_step = cfg["eta"] ** 2 * cfg["sigma"] ** 2
    top = ax.secondary_xaxis("top", functions=(lambda k: k * per_step, lambda t: t / per_step))
    top.set_xlabel("flow time τ = η²σ²·step", fontsize=8)
    ax.set_title(
        f"{_header(regime, cfg)}\nlabel-noise SGD alone (no flow), {note}: median and 10–90% band\n"
        f"median at step {step[-1]:.3g}: " + ", ".join(f"σ{k + 2}/σ1 = {v:.2g}" for k, v in enumerate(end)),
        fontsize=9,
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
    ax.legend(fontsize=7)
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
    ax.set_title(f"distance of the pre-activations to {end_name}", fontsize=8)
    ax.legend(fontsize=7)
    ax.set(xscale="log", xlabel="flow time τ = η²σ²·step")
    _mark_handover(axes, float(fl.attrs["tau_start"]))
    for a in axes:
        a.axvline(tau_b, color="crimson", lw=0.8, ls=":")
    n_in = int(np.nansum(cmp_["brute_within_tol"].values[keep]))
    diff = cmp_["brute_sharpness_diff"].values[keep]
    diff = diff[np.isfinite(diff)]
    se = diff.std(ddof=1) / np.sqrt(diff.size) if diff.size > 1 else np.nan
    fig.suptitle(
        f"{_header(regime, cfg)}\nlabel-noise SGD run on past the hand-over vs the flow from SGD's state at the "
        f"hand-over, {keep.sum()} replicas (median, 10–90% band)\nat τ = {tau_b:.3g} (red line) {n_in} of "
        f"{keep.sum()} replicas are within 5 sd of SGD's stationary spread of the flow's point (z and F)\n"
        f"mean F(SGD) − F(flow) = {diff.mean():.2g} ± {se:.2g} (s.e.)",
        fontsize=9,
    )
    _save(fig, png, pdf)


KINDS.update(sgd_alone=sgd_alone, brute_force=brute_force_overlay)  # regimes with brute_force.steps > 0
