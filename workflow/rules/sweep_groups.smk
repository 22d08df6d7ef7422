# A sweep's grid points, `group_size` at a time in grid order, share one job per stage
# (docs/outputs.md, "Sweeps"): imports, numba's compiled kernel and the flow's worker processes
# are paid once per chunk, and the points of a chunk that differ only in η and σ run as one SGD
# call. Every point keeps its own files; the chunk's params hold its points' configs, so an
# edit reruns the chunks whose points changed. `group_size: 1` leaves a sweep to the per-point
# rules (data.smk, sgd.smk, flow.smk, compare.smk).
#
# These jobs are internal: `snakemake <sweep>` or `snakemake <grid point>` runs them. Snakemake
# lists every rule without a wildcard as a target (--list-target-rules), so each of their files
# ends in the wildcard {internal}, which matches only the empty text: the files are the same.


wildcard_constraints:
    internal=".{0}",


def _internal(paths):
    return [f"{p}{{internal}}" for p in paths]


for _base, _chunks in GROUPS.items():
    for _k, _pts in enumerate(_chunks):
        _tag = f"{_base}/group{_k:03d}"
        _data = [f"{RESULTS}/{p}/data.nc" for p in _pts]
        _sgd = [f"{RESULTS}/{p}/sgd.nc" for p in _pts]
        _flow = [f"{RESULTS}/{p}/flow.nc" for p in _pts]
        _first = SimpleNamespace(regime=_pts[0])
        _cfgs = {p: job_config(config["regimes"][p]) for p in _pts}
        _brute = [p for p in _pts if p in BRUTE_FORCE]

        rule:
            name:
                targets.group_rule("make_data", _base, _k)
            output:
                _internal(_data),
            log:
                f"logs/sweeps/{_tag}/make_data.log{{internal}}",
            params:
                points=_pts,
                cfgs={p: data_subset(config["regimes"][p]) for p in _pts},
                code=code_version("make_data"),
            script:
                "../scripts/make_data_group.py"

        rule:
            name:
                targets.group_rule("run_sgd", _base, _k)
            input:
                data=_data,
            output:
                _internal(_sgd),
            log:
                f"logs/sweeps/{_tag}/run_sgd.log{{internal}}",
            benchmark:
                f"benchmarks/out/sweeps/{_tag}/run_sgd.tsv{{internal}}"
            threads: 2
            resources:
                gpu=sgd_gpus(_first),
                checkpoint_every_steps=sgd_setting("checkpoint_every_steps")(_first),
                checkpoint_every_seconds=sgd_setting("checkpoint_every_seconds")(_first),
            params:
                points=_pts,
                cfgs=_cfgs,
                code=code_version("run_sgd"),
                checkpoint=f"{RESULTS}/.checkpoints",
            script:
                "../scripts/run_sgd_group.py"

        rule:
            name:
                targets.group_rule("run_flow", _base, _k)
            input:
                data=_data,
                sgd=_sgd,
            output:
                _internal(_flow),
            log:
                f"logs/sweeps/{_tag}/run_flow.log{{internal}}",
            benchmark:
                f"benchmarks/out/sweeps/{_tag}/run_flow.tsv{{internal}}"
            threads: 4
            params:
                points=_pts,
                cfgs=_cfgs,
                code=code_version("run_flow"),
                checkpoint=f"{RESULTS}/.checkpoints",
            script:
                "../scripts/run_flow_group.py"

        rule:
            name:
                targets.group_rule("compare", _base, _k)
            input:
                data=_data,
                sgd=_sgd,
                flow=_flow,
                brute=[f"{RESULTS}/{p}/brute_force.nc" for p in _brute],
            output:
                nc=_internal(f"{RESULTS}/{p}/comparison.nc" for p in _pts),
                csv=_internal(f"{RESULTS}/{p}/comparison.csv" for p in _pts),
                html=[comparison_report(p, "{internal}") for p in _pts],
            log:
                f"logs/sweeps/{_tag}/compare.log{{internal}}",
            params:
                points=_pts,
                cfgs=_cfgs,
                brute_points=_brute,
                code=code_version("compare"),
                table_code=code_version("table_html"),
            script:
                "../scripts/compare_group.py"
