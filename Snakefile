# Simplicity bias via global convergence of sharpness minimization: the pipeline.
#
#   data -> sgd -> flow -> compare -> summary
#                     \-> figures
#
# Run `snakemake` (the default profile, profiles/default, sets the cores; see README.md).


# config.yaml is read by workflow/rules/common.smk with a safe YAML loader (Snakemake's
# configfile: directive would parse it first, unsafely and without line numbers).


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/sgd.smk"
include: "workflow/rules/flow.smk"
include: "workflow/rules/brute_force.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/sweep_groups.smk"
include: "workflow/rules/figures.smk"


# all, extensions, paper: their descriptions (--list-target-rules, simbias list) are in
# simbias.targets.FIXED_TARGETS; `snakemake REGIME` builds one regime (rules/targets.smk).
rule all:
    default_target: True
    input:
        all_outputs(),


rule extensions:
    input:
        all_outputs("extensions"),


rule paper:
    input:
        all_outputs("paper"),


include: "workflow/rules/targets.smk"
