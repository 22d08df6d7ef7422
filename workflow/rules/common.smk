import re
import sys
from pathlib import Path
from types import SimpleNamespace

from simbias import sweeps, targets
from simbias.activations import make_activation, pretty
from simbias.code_version import code_version
from simbias.signals import forward_to_children
from simbias.config_job import data_subset, job_config
from simbias.config_files import merged_config
from simbias.config_yaml import parse_overrides
from simbias.config import (
    REGIME_NAME,
    ConfigError,
    check_environment,
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


def _raw_config():
    """config.yaml, then each --configfile, then the regimes file, then --config KEY=VALUE
    (simbias.config_files.merged_config, which `simbias list` and `simbias show` use too).
    """
    settings = workflow.config_settings
    return merged_config(
        Path("config.yaml"),
        list(workflow.overwrite_configfiles),
        parse_overrides(dict(settings.config)),
        replace_base=settings.replace_workflow_config,
        added_by=ADDED_BY,
        added_from=ADDED_FROM,
    )


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


def _report_regimes(regimes):
    """The rows of the report's regime table (workflow/report/workflow.rst): one per regime, one
    per sweep (its name, the number of its grid points, and each field's values over the points).
    A row's name is its category in the report (report_place)."""
    rows = {}
    for name, c in regimes.items():
        of = c.get("sweep_of")
        fields = {
            "m": c["m"],
            "d": c["d"],
            "n": c["n"],
            "eta": c["eta"],
            "sigma": c["sigma"],
            "replicas": c["replicas"],
            "steps": c["sgd"]["steps"],
            "activation": pretty(make_activation(c["activation"]).describe()),
            "target": c["target"],
        }
        row = rows.setdefault(
            of["base"] if of else name,
            {"name": of["base"] if of else name, "sweep": bool(of), "points": 0}
            | {k: [] for k in fields},
        )
        row["points"] += 1
        for k, v in fields.items():
            if v not in row[k]:
                row[k].append(v)
    for row in rows.values():
        row["note"] = f" (sweep, {row['points']} points)" if row["sweep"] else ""
        for k, v in row.items():
            if isinstance(v, list):
                row[k] = ", ".join(str(x) for x in sorted(v))
    return list(rows.values())


# for the report's regime table only (jobs get their own regime's entry, never this)
config["report_regimes"] = _report_regimes(config["regimes"])

RESULTS = config["results"]
REGIMES = list(config["regimes"])
# regimes of the default target, and those behind `snakemake extensions` and `snakemake paper`
TARGETS = {
    t: [r for r in REGIMES if config["regimes"][r]["target"] == t]
    for t in targets.TARGET_RULES
}
# regimes whose SGD is continued past the hand-over and held against the flow
BRUTE_FORCE = [r for r in REGIMES if config["regimes"][r]["brute_force"]["steps"] > 0]
BRUTE_KINDS = list(targets.BRUTE_KINDS)
FIGURE_KINDS = list(targets.FIGURE_KINDS)
# sweep base name -> its grid-point regimes (see simbias.sweeps)
SWEEPS = targets.sweeps(config["regimes"])
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
            category=report_place_of("figures")[0],
            subcategory=report_place_of("figures")[1],
            labels={"regime": "{regime}", "figure": kind},
        )
        out[f"{kind}_pdf"] = f"{RESULTS}/figures/{{regime}}_{kind}.pdf"
    return out


def summary_inputs(wildcards):
    return expand(
        f"{RESULTS}/{{regime}}/comparison.csv", regime=SUMMARIES[wildcards.summary]
    )


def all_outputs(target="default"):
    """A target's every file: each of its regimes' own (NetCDF, tables, figures; simbias.targets),
    its sweeps' tables and phase diagrams, its summaries."""
    regimes = TARGETS[target]
    bases = [b for b in SWEEPS if SWEEPS[b][0] in regimes]
    names = [r for r in regimes if "sweep_of" not in config["regimes"][r]] + bases
    files = [
        f for r in names for f in targets.regime_files(r, config["regimes"], RESULTS)
    ]
    for stem in summary_groups(target):
        files += [f"{RESULTS}/{stem}.csv", f"{RESULTS}/{stem}.html"]
    return files


def brute_force_input(wildcards):
    """brute_force.nc for a regime with brute_force.steps > 0, else nothing."""
    if wildcards.regime in BRUTE_FORCE:
        return f"{RESULTS}/{wildcards.regime}/brute_force.nc"
    return []


def unknown_target_input(wildcards):
    """`snakemake NAME` where NAME is no rule, regime or file (rules/targets.smk): one line
    naming the closest targets, exit 1."""
    names = targets.target_names(config["regimes"])
    sys.stderr.write(targets.unknown_target(wildcards.name, names) + "\n")
    raise SystemExit(1)


def report_failures():
    """After a run: name every regime of this run that its summary marks as failed, and why.

    Only the summaries this run's targets include, and in them only their regimes in this
    config: a summary_*.csv an earlier run left in results/ (another regimes file, another
    target) is not this run's news."""
    import csv

    built = {
        str(f)
        for job in workflow.dag.jobs
        if job.rule.name == "summary"
        for f in job.output
    }
    for stem, regimes in sorted(SUMMARIES.items()):
        path = Path(f"{RESULTS}/{stem}.csv")
        if str(path) not in built or not path.exists():
            continue
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("failed") and row.get("regime") in regimes:
                    sys.stderr.write(
                        f"regime '{row['regime']}' failed: {row['failed']} ({path})\n"
                    )


def report_place(regime, kind):
    """(category, subcategory) of a regime's result in the report: the regime and the kind
    ('figures', 'comparison with theory'); a sweep's grid point goes to its sweep's category, in
    a subcategory of its own, so that the menu lists each sweep once, whatever its size.
    """
    of = config["regimes"][regime].get("sweep_of")
    return (of["base"], regime) if of else (regime, kind)


def report_place_of(kind):
    """report_place for the {regime} wildcard: two functions, for category and subcategory."""
    return (
        lambda wc: report_place(wc.regime, kind)[0],
        lambda wc: report_place(wc.regime, kind)[1],
    )


def comparison_report(regime=None, suffix=""):
    """A regime's comparison.html, marked for the report: the per-regime rule's '{regime}'
    (regime None), or a grid point of a grouped sweep's compare job (suffix: its empty
    '{internal}' wildcard). Its caption names no wildcard: a grouped job has no {regime}.
    """
    kind = "comparison with theory"
    if regime is None:
        category, subcategory = report_place_of(kind)
    else:
        category, subcategory = report_place(regime, kind)
    name = regime or "{regime}"
    return report(
        f"{RESULTS}/{name}/comparison.html{suffix}",
        caption="../report/table_comparison.rst",
        category=category,
        subcategory=subcategory,
        labels={"regime": name, "table": "comparison (per replica)"},
    )


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


onstart:
    # SIGINT/SIGTERM to Snakemake alone (`kill PID`) also stop the running jobs (simbias.signals)
    forward_to_children()


onsuccess:
    report_failures()
    cancel_rate_limit_timers()


onerror:
    cancel_rate_limit_timers()
