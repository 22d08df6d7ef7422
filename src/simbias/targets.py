"""What ``snakemake NAME`` builds, for the Snakefile and for ``simbias list`` / ``simbias show``.

A regime's name is a target of its own (``snakemake fig1a``): its NetCDF files, its comparison
table and its figures. A sweep's base name builds every grid point's, with the sweep's table and
phase diagram; a grid point's name builds that point's. ``all`` (the default), ``extensions`` and
``paper`` build every regime whose ``target:`` names them, with their summaries.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence

FIGURE_KINDS = ("singular_values", "trajectory", "neuron_pca", "structure")
# the figures of a regime with brute_force.steps > 0
BRUTE_KINDS = ("brute_force", "sgd_alone")
# a regime's NetCDF files and its comparison table, in pipeline order
REGIME_FILES = ("data.nc", "sgd.nc", "flow.nc", "comparison.nc", "comparison.csv", "comparison.html")

# `target:` value -> the rule that builds its regimes (`snakemake`, `snakemake extensions`, ...)
TARGET_RULES = {"default": "all", "extensions": "extensions", "paper": "paper"}
# the targets that are no regime: rule name -> what it builds (its docstring, set in targets.smk)
FIXED_TARGETS = {
    "all": "every regime with target: default, and their summary (`snakemake` alone builds it)",
    "extensions": "every regime with target: extensions, and their summary",
    "paper": "every regime with target: paper, and their summary",
    "readme_figure": "copy results/figures/fig1a_trajectory.png to docs/img/, the README's image",
}

# The Snakefile's rules with fixed names. A regime (or sweep) may not take one of them: its own
# target rule would have the same name (tests/test_targets.py checks the list against the Snakefile).
RULE_NAMES = frozenset(
    {
        *FIXED_TARGETS,
        "unknown_target",
        "make_data",
        "run_sgd",
        "run_flow",
        "run_brute_force",
        "compare",
        "summary",
        "comparison_html",
        "summary_html",
        "sweep_table_html",
        "figures",
        "brute_force_figures",
        "sweep_table",
        "phase_diagram",
    }
)
# the names of a grouped sweep's jobs (workflow/rules/sweep_groups.smk)
GROUP_STAGES = ("make_data", "run_sgd", "run_flow", "compare")
GROUP_RULE = re.compile(rf"(?:{'|'.join(GROUP_STAGES)})_.+_group\d{{3,}}")


def group_rule(stage: str, base: str, k: int) -> str:
    """The rule name of chunk ``k`` of sweep ``base`` for ``stage`` (matches GROUP_RULE)."""
    return f"{stage}_{base}_group{k:03d}"


def rule_name_clash(name: str) -> str | None:
    """Why a regime or sweep may not be called ``name`` (it names one of the Snakefile's rules), or None."""
    if name in RULE_NAMES:
        return (
            f"regime name '{name}' is taken by the pipeline's rule '{name}' (`snakemake {name}` "
            "must mean one thing): choose another name"
        )
    if GROUP_RULE.fullmatch(name):
        return (
            f"regime name '{name}' has the form of a sweep's internal rule names "
            "(make_data_<sweep>_group000): choose another name"
        )
    return None


def sweeps(regimes: dict[str, dict]) -> dict[str, list[str]]:
    """{sweep base name: its grid points, in config order} of a validated config's regimes."""
    out: dict[str, list[str]] = {}
    for name, reg in regimes.items():
        if "sweep_of" in reg:
            out.setdefault(reg["sweep_of"]["base"], []).append(name)
    return out


def draws_point_figures(reg: dict) -> bool:
    """False for the grid points of a sweep whose point figures are off (sweeps.POINT_FIGURES_MAX)."""
    return reg.get("sweep_of", {}).get("point_figures", True)


def regime_files(name: str, regimes: dict[str, dict], results: str) -> list[str]:
    """The files ``snakemake NAME`` builds for a regime, or for every grid point of a sweep."""
    if name not in regimes:  # a sweep's base name
        files = [f for p in sweeps(regimes)[name] for f in regime_files(p, regimes, results)]
        tables = [f"{results}/sweeps/{name}.{ext}" for ext in ("csv", "html")]
        return files + tables + phase_figures([name], results)
    reg = regimes[name]
    brute = reg["brute_force"]["steps"] > 0
    files = [f"{results}/{name}/{f}" for f in REGIME_FILES]
    if brute:
        files.insert(3, f"{results}/{name}/brute_force.nc")
    if draws_point_figures(reg):
        kinds = FIGURE_KINDS + (BRUTE_KINDS if brute else ())
        files += [f"{results}/figures/{name}_{k}.{ext}" for k in kinds for ext in ("png", "pdf")]
    return files


def phase_figures(bases: Iterable[str], results: str) -> list[str]:
    return [f"{results}/figures/{b}_phase.{ext}" for b in bases for ext in ("png", "pdf")]


def target_names(regimes: dict[str, dict]) -> list[str]:
    """Every name ``snakemake NAME`` accepts: the fixed targets, the sweeps, the regimes."""
    return [*FIXED_TARGETS, *sweeps(regimes), *regimes]


def unknown_target(name: str, names: Sequence[str], what: str = "target") -> str:
    """One line for a name that is none of ``names``: the closest of them, if any."""
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}?" if close else f"it is no {what} of this config."
    return f"no {what} '{name}': {hint} (simbias list shows them all)"


def describe(name: str, regimes: dict[str, dict]) -> str:
    """What ``snakemake NAME`` builds, in a few words (the target rule's docstring)."""
    if name not in regimes:  # a sweep's base name
        points = sweeps(regimes)[name]
        axes = " x ".join(regimes[points[0]]["sweep_of"]["axes"])
        return f"sweep over {axes}: its {len(points)} grid points, their table and phase diagram"
    reg = regimes[name]
    of = reg.get("sweep_of")
    if of is not None:
        at = ", ".join(f"{k} = {v}" for k, v in of["point"].items())
        return f"grid point {at} of sweep {of['base']}"
    return "regime: " + (reg.get("description") or f"m = {reg['m']}, d = {reg['d']}, n = {reg['n']}")
