"""Stages summary and sweep_table: one row per regime, one row per grid point."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import analysis, storage
from .common import START_NOT_FINITE


def summarize(csv_paths: list[str], out: str) -> None:
    """results/summary.csv: one row per regime."""
    rows = []
    for p in csv_paths:
        # text columns as text: an all-empty column would otherwise be read as float NaN
        df = pd.read_csv(p, dtype={"flag": str, "not_applicable_reason": str})
        ok = ~df["sgd_diverged"]
        rows.append(
            {
                "regime": df["regime"].iloc[0],
                "replicas": len(df),
                "sgd_diverged": int(df["sgd_diverged"].sum()),
                "flow_converged": int((df["flow_status"] == "converged").sum()),
                "reached_theorem2_point": _count_or_na(df["reached_theorem2_point"]),
                "flagged": int(df["flag"].fillna("").astype(bool).sum()),
                "median_z_dist_sgd_end": df.loc[ok, "z_dist_sgd_end"].median(),
                "median_z_dist_flow_end": df.loc[ok, "z_dist_flow_end"].median(),
                "median_sharpness_gap": df.loc[ok, "sharpness_gap"].median(),
                "median_tau_eps_observed": df.loc[ok, "tau_eps_observed"].median(),
                "median_tau_eps_theorem3_bound": df.loc[ok, "tau_eps_theorem3_bound"].median(),
                "theorem3_bound_holds_all": _all_or_na(df.loc[ok, "theorem3_bound_holds"]),
                "median_tau_z_eps_observed": df.loc[ok, "tau_z_eps_observed"].median(),
                "median_tau_z_eps_theorem3_bound": df.loc[ok, "tau_z_eps_theorem3_bound"].median(),
                "theorem3_z_bound_violated": _count_false_or_na(df.loc[ok, "theorem3_z_bound_holds"]),
                "lemma6_holds_all": _all_or_na(df.loc[ok, "lemma6_holds_all_records"]),
                "median_loss_sgd_end": df.loc[ok, "loss_sgd_end"].median(),
                "median_handover_theta_move": df.loc[ok, "handover_theta_move"].median(),
                "median_handover_move_ratio": df.loc[ok, "handover_move_ratio"].median(),
                "feature_rank_sgd_end_median": df.loc[ok, "feature_rank_sgd_end"].median(),
                "feature_rank_flow_end_median": df.loc[ok, "feature_rank_flow_end"].median(),
                "feature_rank_arrival_on_M_median": df.loc[
                    ok & (df["step_arrival_on_M"] >= 0), "feature_rank_arrival_on_M"
                ].median(),
                "cluster_count_flow_end_median": df.loc[ok, "cluster_count_flow_end"].median(),
                **_brute_summary(df, ok),
                "theorem2_applicable": bool(df["theorem2_applicable"].iloc[0]),
                "theorem3_applicable": bool(df["theorem3_applicable"].iloc[0]),
                "not_applicable_reason": df["not_applicable_reason"].fillna("").iloc[0],
                "failed": _failure(df),
            }
        )
    with storage.atomic_path(out) as tmp:  # medians to 6 significant digits: comparison.nc has them all
        pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.6g")


def sweep_table(csv_paths: list[str], cfgs: dict[str, dict], out: str) -> None:
    """results/sweeps/{base}.csv: one row per grid point (its values, then the medians the phase
    diagram shows), over the replicas that did not diverge."""
    rows = []
    for p in csv_paths:
        df = pd.read_csv(p, usecols=lambda c: c in SWEEP_TABLE_COLUMNS)
        regime = df["regime"].iloc[0]
        ok = ~df["sgd_diverged"].astype(bool)
        gap = df.loc[ok, "sharpness_gap"]
        rows.append(
            {
                "regime": regime,
                **cfgs[regime]["sweep_of"]["point"],
                "replicas": len(df),
                "diverged": int((~ok).sum()),
                "rank_sgd": analysis.lower_median(df.loc[ok, "feature_rank_sgd_end"]),
                "rank_flow": analysis.lower_median(df.loc[ok, "feature_rank_flow_end"]),
                "gap": gap.median() if gap.notna().any() else df.loc[ok, "sharpness_flow_end"].median(),
                "gap_is_F": not gap.notna().any(),
                # round-off of F − F*: the figures' floor times F*
                "gap_floor": analysis.GAP_FLOOR_REL * df.loc[ok, "sharpness_star"].median()
                if gap.notna().any()
                else np.nan,
            }
        )
    with storage.atomic_path(out) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


# the comparison columns sweep_table reads
SWEEP_TABLE_COLUMNS = (
    "regime",
    "sgd_diverged",
    "sharpness_gap",
    "sharpness_star",
    "sharpness_flow_end",
    "feature_rank_sgd_end",
    "feature_rank_flow_end",
)


def _failure(df: pd.DataFrame) -> str:
    """Why a regime has no result at all ('' when at least one replica got through SGD to a flow)."""
    diverged = df["sgd_diverged"].astype(bool)
    if diverged.all():
        return (
            f"every replica ({len(df)}) diverged during SGD; the regime's run_sgd log and the "
            "'failure' attribute of its sgd.nc suggest a stable eta"
        )
    overflow = df["flow_status"] == START_NOT_FINITE
    if (diverged | overflow).all():
        return (
            f"no replica could be flowed: {int(overflow.sum())} of {len(df)} hold values beyond "
            "record_dtype's range at SGD's end (record_overflow in sgd.nc; record_dtype: float64 "
            f"stores them), {int(diverged.sum())} diverged during SGD"
        )
    return ""


def _count_or_na(col: pd.Series):
    """Count of True, or 'n/a' when the column is empty (theory not applicable)."""
    col = col.dropna()
    return "n/a" if col.empty else int(col.astype(bool).sum())


def _brute_summary(df: pd.DataFrame, ok: pd.Series) -> dict:
    """The brute-force columns' summary (empty where the regime has no brute-force run)."""
    if "brute_within_tol" not in df:
        return {}
    cols = ("z_gap", "z_tol", "sharpness_diff", "sharpness_tol", "z_dist_sgd", "z_dist_flow")
    diff = df.loc[ok, "brute_sharpness_diff"].dropna()
    return {
        "brute_tau": df["brute_tau"].iloc[0],
        "brute_within_tol": _count_or_na(df.loc[ok, "brute_within_tol"]),
        **{f"median_brute_{c}": df.loc[ok, f"brute_{c}"].median() for c in cols},
        # an ensemble bias smaller than the per-replica spread shows in the mean, not per replica
        "mean_brute_sharpness_diff": diff.mean(),
        "se_brute_sharpness_diff": diff.std(ddof=1) / np.sqrt(diff.count()) if diff.count() > 1 else np.nan,
    }


def _count_false_or_na(col: pd.Series):
    """Count of False (a bound surely violated), or 'n/a' when the column is empty."""
    col = col.dropna()
    return "n/a" if col.empty else int((~col.astype(bool)).sum())


def _all_or_na(col: pd.Series):
    col = col.dropna()
    return "n/a" if col.empty else bool(col.astype(bool).all())
