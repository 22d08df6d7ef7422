# `snakemake NAME` for every regime, sweep and grid point: that name's own files (its NetCDF,
# comparison table and figures; for a sweep, every grid point's with the phase diagram), see
# simbias.targets. simbias.config refuses regime names that are rule names.
for _name in [*SWEEPS, *REGIMES]:

    rule:
        name:
            _name
        input:
            targets.regime_files(_name, config["regimes"], RESULTS),

    workflow.get_rule(_name).docstring = targets.describe(_name, config["regimes"])


for _name, _doc in targets.FIXED_TARGETS.items():
    workflow.get_rule(_name).docstring = _doc


# `snakemake fig1x`: Snakemake takes a name that is no rule for a file; a bare name (no '/' or
# '.') that no rule makes ends here, with "did you mean fig1a?" instead of MissingRuleException.
rule unknown_target:
    input:
        unknown_target_input,
    output:
        "{name}",
    log:
        "logs/unknown_target/{name}.log",
    wildcard_constraints:
        name=REGIME_NAME.pattern,
    localrule: True
    shell:
        "true"
