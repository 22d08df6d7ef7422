# Simplicity bias via global convergence of sharpness minimization: the pipeline.
#
#   data -> sgd -> flow -> compare -> summary
#                     \-> figures
#
# Run `snakemake --cores 2` (see README.md).


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/sgd.smk"
include: "workflow/rules/flow.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        all_figures(),
        f"{RESULTS}/summary.csv",
