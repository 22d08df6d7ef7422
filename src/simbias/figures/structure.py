"""Figure kinds neuron_pca and structure: the neurons' PCA at the end, and effective rank and
neuron clusters over time (GD's own version without a flow)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .. import analysis, storage
from .style import (
    BAND,
    FONT,
    _algorithm,
    _clock_label,
    _header,
    _integer_axis,
    _integer_band,
    _kept,
    _legend_outside,
    _mark_handover,
    _save,
)
from .trajectory import _fill_end

# Up to this many final neuron clusters get a legend entry each (their sizes) and a colour of
# the tab10 palette; past it, one legend entry for them all.
LEGEND_CLUSTERS = 10


def _cluster_markers(ax, xs: np.ndarray, ys: np.ndarray, labels: np.ndarray, colors) -> None:
    """A large marker per neuron at its end, coloured by its final cluster; a legend entry per
    cluster (its size) up to LEGEND_CLUSTERS, one entry for them all past that (a line per
    cluster would run off the canvas)."""
    k = int(labels.max()) + 1
    sizes = np.bincount(labels)
    for c in range(k):
        j = np.flatnonzero(labels == c)
        label = f"cluster {c + 1}: {sizes[c]} neuron{'s' if sizes[c] > 1 else ''}"
        ax.scatter(
            xs[j],
            ys[j],
            color=colors[c],
            edgecolors="k",
            s=140,
            zorder=4,
            label=label if k <= LEGEND_CLUSTERS else None,
        )
    if k > LEGEND_CLUSTERS:
        ax.scatter(
            [],
            [],
            color="grey",
            edgecolors="k",
            s=140,
            label=f"{k} final clusters\n(largest: {sizes.max()} neuron{'s' if sizes.max() > 1 else ''})",
        )


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
    if X.shape[0] == 1:  # one input: each z_j is a number, drawn against τ (no PCA plane)
        _neuron_z_one_input(regime, cfg, data, sgd, fl, r, png, pdf)
        return
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
    colors = sns.color_palette("tab10" if k <= LEGEND_CLUSTERS else "husl", k)
    alg = _algorithm(sgd)
    fig, ax = plt.subplots(figsize=(10, 6.5))
    for j in range(m):
        c = colors[labels[j]]
        ax.plot(ps[:, j, 0], ps[:, j, 1], color=c, lw=0.8, alpha=0.6)
        ax.plot(pf[:, j, 0], pf[:, j, 1], color=c, lw=1.0, ls="--", alpha=0.8)
        ax.scatter(ps[0, j, 0], ps[0, j, 1], color=c, marker="o", facecolors="none", s=25)
    ax.scatter(ps[-1, :, 0], ps[-1, :, 1], c="k", marker="s", s=12, label=f"end of {alg}", zorder=3)
    _cluster_markers(ax, pe[:, 0], pe[:, 1], labels, colors)
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


def _neuron_z_one_input(regime, cfg, data, sgd, fl, r: int, png, pdf) -> None:
    """n = 1: replica r's pre-activations z_j = θ_jᵀx along SGD and the flow against τ, coloured
    by the cluster each neuron ends in, with the Theorem 2 point z* (φ⁻¹(y/m) for w_j = 1)."""
    from .. import theory
    from ..activations import make_activation

    X, y, w = data["x"].values, data["y"].values, data["w"].values
    tau_s = sgd["tau"].values
    pos = tau_s > 0
    zs = (sgd["theta"].values[r] @ X.T)[pos, :, 0]  # (T, m)
    zf = (fl["theta"].values[r] @ X.T)[..., 0]
    okf = np.isfinite(zf).all(axis=1)
    z_end = (fl["theta_end"].values[r] @ X.T)[:, 0]
    labels = analysis.cluster_labels(z_end[:, None])
    m, k = z_end.size, int(labels.max()) + 1 if labels.size else 0
    colors = sns.color_palette("tab10" if k <= LEGEND_CLUSTERS else "husl", max(k, 1))
    color = [colors[c] for c in labels] if labels.size else ["grey"] * m
    alg = _algorithm(sgd)
    fig, ax = plt.subplots(figsize=(10, 6.5))
    for j in range(m):
        ax.plot(tau_s[pos], zs[:, j], color=color[j], lw=0.8, alpha=0.6)
        ax.plot(fl["tau"].values[okf], zf[okf, j], color=color[j], lw=1.0, ls="--", alpha=0.8)
    tau_end = float(fl["tau_end"].values[r])
    if np.isfinite(tau_end) and labels.size:
        _cluster_markers(ax, np.full(m, tau_end), z_end, labels, colors)
    z_star = theory.theorem2_target(make_activation(cfg["activation"]), X, y, w)[0]
    if z_star is not None:
        for i, v in enumerate(np.unique(np.round(z_star[:, 0], 12))):
            ax.axhline(
                v,
                color="crimson",
                lw=0.9,
                ls=":",
                label=None if i else "z*: Theorem 2 point\n(φ⁻¹(y/m) for w_j = 1)",
            )
    ax.plot([], [], color="grey", label=f"{alg} path")
    ax.plot([], [], color="grey", ls="--", label="flow path")
    ax.set(xscale="log", xlabel=_clock_label(sgd), ylabel="z_j = θ_jᵀx  (the neuron's pre-activation)")
    _mark_handover([ax], float(fl.attrs["tau_start"]))
    _legend_outside(ax)
    ax.set_title(
        f"{_header(regime, cfg)}\nreplica {r}: the {m} neurons' pre-activations on the single input end in "
        f"{k} cluster{'s' if k != 1 else ''}\n(n = 1: each z_j is a number, drawn against τ instead of a "
        "principal-component plane;\ncolour: the cluster a neuron ends in)"
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
