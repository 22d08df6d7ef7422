import re
import sys
from pathlib import Path
from types import SimpleNamespace

from snakemake.utils import update_config

from simbias import sweeps
from simbias.activations import make_activation, pretty
from simbias.code_version import code_version
from simbias.config_job import data_subset, job_config
from simbias.config_yaml import parse_overrides, read_config_yaml
from simbias.config import (
    REGIME_NAME,
    ConfigError,
    check_environment,
    check_regimes_file,
    check_summary_names,
    load_schema,
    summary_groups as _summary_groups,
    validate_config,
)

# regime name -> the stem of the --configfile that added it (config.yaml's own are not here):
# their rows go into a summary of their own (summary_{stem}.csv), so the paper's summary.csv
# never depends on which flags were used last.
ADDED_BY = {}
ADDED_FROM = {}  # that stem -> the file as given


def _note_added_regimes(raw, more, path):
    known, new = raw.get("regimes"), more.get("regimes")
    if isinstance(new, dict):
        stem = re.sub(r"[^A-Za-z0-9_-]", "_", Path(path).stem)
        for name in new:
            if not isinstance(known, dict) or name not in known:
                ADDED_BY.setdefault(name, stem)
                ADDED_FROM.setdefault(stem, str(path))


def _read_mapping(path):
    """An extra config file, read by the safe loader; its top level must be a mapping."""
    more = read_config_yaml(path)
    if not isinstance(more, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (regimes: ...)")
    return more


def _raw_config():
    """config.yaml, then each --configfile, then the regimes file, then --config KEY=VALUE.

    Every file goes through the safe YAML loader (not Snakemake's configfile:). An extra
    file's regimes merge with config.yaml's: a new name adds a regime, a known name
    overrides only the fields it gives. --replace-workflow-config drops config.yaml.
    `--config regimes_file=my.yaml` is the safe route for extra regimes: Snakemake itself
    parses every --configfile first, with yte, which runs Python written in the file
    (docs/reliability.md); a regimes file is read only by the safe loader.
    """
    extras = list(workflow.overwrite_configfiles)
    settings = workflow.config_settings
    base = Path("config.yaml")
    keep_base = not settings.replace_workflow_config and (base.exists() or not extras)
    raw = read_config_yaml(base) if keep_base else {}
    if not isinstance(raw, dict):
        return raw  # validate_config names the problem
    for extra in extras:
        if Path(extra).resolve() == base.resolve():
            continue
        more = _read_mapping(extra)
        _note_added_regimes(raw, more, extra)
        update_config(raw, more)
    overrides = parse_overrides(dict(settings.config))
    # --config regimes_file= wins over config.yaml's; given but empty or null is refused
    given = [
        src.pop("regimes_file") for src in (overrides, raw) if "regimes_file" in src
    ]
    if given:
        regimes_file = check_regimes_file(given[0])
        more = _read_mapping(regimes_file)
        _note_added_regimes(raw, more, regimes_file)
        update_config(raw, more)
    update_config(raw, overrides)  # --config KEY=VALUE overrides
    return raw


# Refuse a bad config before any job starts: one line naming regime and field, exit 1.
_notes = []
try:
    check_environment()  # SIMBIAS_CPU_KERNEL, read by every SGD job
    _validated = validate_config(
        _raw_config(),
        load_schema(workflow.source_path("../schemas/config.schema.yaml")),
        notes=_notes,
    )
    check_summary_names(_validated["regimes"], ADDED_BY, ADDED_FROM)
except ConfigError as exc:
    sys.stderr.write(f"config error: {exc}\n")
    sys.exit(1)
for _note in _notes:
    sys.stderr.write(f"config note: {_note}\n")
if workflow.overwrite_configfiles:
    sys.stderr.write(
        "config note: Snakemake parses every --configfile itself (yte), which runs Python "
        "written in the file; for files you did not write, use --config regimes_file=FILE "
        "(docs/reliability.md)\n"
    )
config.clear()
config.update(_validated)
# for the report's regime table only (jobs get their own regime's entry, never this)
config["activation_text"] = {
    r: pretty(make_activation(c["activation"]).describe())
    for r, c in config["regimes"].items()
}

RESULTS = config["results"]
REGIMES = list(config["regimes"])
# regimes of the default target, and those behind `snakemake extensions` and `snakemake paper`
TARGETS = {
    t: [r for r in REGIMES if config["regimes"][r]["target"] == t]
    for t in ("default", "extensions", "paper")
}
# regimes whose SGD is continued past the hand-over and held against the flow
BRUTE_FORCE = [r for r in REGIMES if config["regimes"][r]["brute_force"]["steps"] > 0]
BRUTE_KINDS = ["brute_force", "sgd_alone"]
FIGURE_KINDS = ["singular_values", "trajectory", "neuron_pca", "structure"]
# sweep base name -> its grid-point regimes (see simbias.sweeps)
SWEEPS = {}
for _name, _reg in config["regimes"].items():
    if "sweep_of" in _reg:
        SWEEPS.setdefault(_reg["sweep_of"]["base"], []).append(_name)
# sweep base -> its grid points in chunks, one job per chunk and stage (rules/sweep_groups.smk);
# sweeps with group_size: 1 are left to the per-point rules
GROUPS = sweeps.groups(config["regimes"])
# {regime} of the per-point rules: any regime name but a grouped sweep's grid points
UNGROUPED = (
    f"(?!(?:{'|'.join(re.escape(b) for b in GROUPS)})__)" if GROUPS else ""
) + REGIME_NAME.pattern


def summary_groups(target="default"):
    """{summary file stem: its regimes} of a target (simbias.config.summary_groups)."""
    return _summary_groups(config["regimes"], ADDED_BY, target)


SUMMARIES = {
    **summary_groups("paper"),
    **summary_groups("extensions"),
    **summary_groups("default"),
}


# {regime} is any path-safe name (simbias.config.REGIME_NAME), not an alternation of every
# regime's name: matching a file name then costs the same whatever the number of regimes, so the
# DAG of a 1000-point sweep builds in time linear in its jobs. regime_entry refuses other names.
wildcard_constraints:
    regime=REGIME_NAME.pattern,
    base="|".join(SWEEPS) or "(?!)",
    summary="|".join(SUMMARIES) or "(?!)",


def regime_entry(wildcards):
    """The validated config entry of the job's regime; one clear line for a name that is none."""
    try:
        return config["regimes"][wildcards.regime]
    except KeyError:
        raise ValueError(
            f"no regime '{wildcards.regime}' in the config: a target names a regime that "
            "config.yaml (and the regimes file) do not define"
        ) from None


def regime_cfg(wildcards):
    """A regime's resolved config entry (params rerun the job when it changes).

    Without the operational fields (checkpoint intervals): they change how a job runs,
    not what it computes.
    """
    return job_config(regime_entry(wildcards))


def sgd_setting(name):
    """An operational sgd.* field for a job's resources (resources never trigger a rerun)."""

    def get(wildcards):
        return regime_entry(wildcards)["sgd"][name]

    return get


def sgd_gpus(wildcards):
    """GPUs run_sgd asks for: 1 where the gpu extra (CuPy) is installed and the regime's
    backend is not numpy, else 0. The job still picks its backend at run time (backend: auto).
    """
    import importlib.util

    backend = regime_entry(wildcards).get("backend", "auto")
    return int(backend != "numpy" and importlib.util.find_spec("cupy") is not None)


def checkpoint_path(wildcards):
    """Where run_sgd keeps its checkpoint: outside its output, so Snakemake never deletes it."""
    return f"{RESULTS}/.checkpoints/{wildcards.regime}/run_sgd.npz"


def regime_data_cfg(wildcards):
    """Only the fields the data stage depends on."""
    return data_subset(regime_entry(wildcards))


def sweep_points(wildcards):
    return SWEEPS[wildcards.base]


def sweep_cfgs(wildcards):
    """Each grid point's place in the sweep (its point and the axes): all the sweep's table reads
    from the config. Any other config change reaches it through the comparison tables it reads.
    """
    return {
        r: {"sweep_of": job_config(config["regimes"][r])["sweep_of"]}
        for r in SWEEPS[wildcards.base]
    }


def figure_outputs(kinds):
    """A figures job's outputs: {kind}_png (in the report) and {kind}_pdf for each kind."""
    out = {}
    for kind in kinds:
        out[f"{kind}_png"] = report(
            f"{RESULTS}/figures/{{regime}}_{kind}.png",
            caption=f"../report/figure_{kind}.rst",
            category="{regime}",
            subcategory="figures",
            labels={"regime": "{regime}", "figure": kind},
        )
        out[f"{kind}_pdf"] = f"{RESULTS}/figures/{{regime}}_{kind}.pdf"
    return out


def draws_point_figures(regime):
    """False for the grid points of a sweep whose point figures are off (sweeps.POINT_FIGURES_MAX)."""
    return config["regimes"][regime].get("sweep_of", {}).get("point_figures", True)


def summary_inputs(wildcards):
    return expand(
        f"{RESULTS}/{{regime}}/comparison.csv", regime=SUMMARIES[wildcards.summary]
    )


def all_outputs(target="default"):
    """A target's every file: NetCDF, tables (CSV and HTML), figures, summaries."""
    regimes = TARGETS[target]
    files = expand(
        f"{RESULTS}/{{regime}}/{{name}}",
        regime=regimes,
        name=["data.nc", "sgd.nc", "flow.nc", "comparison.nc", "comparison.html"],
    )
    files += expand(
        f"{RESULTS}/{{regime}}/brute_force.nc",
        regime=[r for r in regimes if r in BRUTE_FORCE],
    )
    for stem in summary_groups(target):
        files += [f"{RESULTS}/{stem}.csv", f"{RESULTS}/{stem}.html"]
    if target == "default" and "fig1a" in regimes:  # the README's headline figure
        files.append("docs/img/fig1a_trajectory.png")
    return files + all_figures(target)


def all_figures(target="default"):
    regimes = TARGETS[target]
    bases = [b for b in SWEEPS if SWEEPS[b][0] in regimes]
    drawn = [r for r in regimes if draws_point_figures(r)]
    per_regime = expand(
        f"{RESULTS}/figures/{{regime}}_{{kind}}.{{ext}}",
        regime=drawn,
        kind=FIGURE_KINDS,
        ext=["png", "pdf"],
    )
    brute = expand(
        f"{RESULTS}/figures/{{regime}}_{{kind}}.{{ext}}",
        regime=[r for r in drawn if r in BRUTE_FORCE],
        kind=BRUTE_KINDS,
        ext=["png", "pdf"],
    )
    return (
        per_regime
        + brute
        + expand(
            f"{RESULTS}/figures/{{base}}_phase.{{ext}}", base=bases, ext=["png", "pdf"]
        )
    )


def brute_force_input(wildcards):
    """brute_force.nc for a regime with brute_force.steps > 0, else nothing."""
    if wildcards.regime in BRUTE_FORCE:
        return f"{RESULTS}/{wildcards.regime}/brute_force.nc"
    return []


def report_failures():
    """After a run: name every regime the summaries mark as failed, and why."""
    import csv

    for path in sorted(Path(RESULTS).glob("summary*.csv")):
        if path.exists():
            with open(path, newline="") as fh:
                for row in csv.DictReader(fh):
                    if row.get("failed"):
                        sys.stderr.write(
                            f"regime '{row['regime']}' failed: {row['failed']} ({path})\n"
                        )


def _table_regime(wildcards):
    """The regime of a comparison table ('fig1a/comparison' -> 'fig1a'); None for a summary."""
    head, _, tail = wildcards.table.partition("/")
    return head if tail == "comparison" else None


def table_category(wildcards):
    return _table_regime(wildcards) or "summary"


def table_subcategory(wildcards):
    return "comparison with theory" if _table_regime(wildcards) else None


def table_labels(wildcards):
    regime = _table_regime(wildcards)
    if regime:
        return {"regime": regime, "table": "comparison (per replica)"}
    return {"table": wildcards.table}


def cancel_rate_limit_timers():
    """End the timers of Snakemake's job rate limiter once the run is over.

    With ``max-jobs-per-timespan`` (profiles/default: 1000/60s) every scheduling round starts a
    ``threading.Timer`` that wakes the scheduler one timespan later; Python waits for such
    threads at exit, so a finished or interrupted run would linger up to a minute. After the
    run no round is needed: cancelling them lets Snakemake exit at once."""
    import threading

    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.cancel()


onsuccess:
    report_failures()
    cancel_rate_limit_timers()


onerror:
    cancel_rate_limit_timers()
