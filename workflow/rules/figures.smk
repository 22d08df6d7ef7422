# One job per regime draws all its figures, PNG and PDF (one process: imports and the theme once).
rule figures:
    input:
        data=f"{RESULTS}/{{regime}}/data.nc",
        sgd=f"{RESULTS}/{{regime}}/sgd.nc",
        flow=f"{RESULTS}/{{regime}}/flow.nc",
        comparison=f"{RESULTS}/{{regime}}/comparison.nc",
    output:
        **figure_outputs(FIGURE_KINDS),
    log:
        "logs/{regime}/figures.log",
    # the regime's config is read from comparison.nc (config_json): any config change that
    # alters a figure reruns an upstream job, whose new output reruns the figures
    params:
        kinds=FIGURE_KINDS,
        code=code_version("figure"),
    script:
        "../scripts/figure.py"


# A sweep's grid points in one compact table (one row each), which the phase diagram reads.
rule sweep_table:
    input:
        lambda wc: expand(
            f"{RESULTS}/{{regime}}/comparison.csv", regime=sweep_points(wc)
        ),
    output:
        f"{RESULTS}/sweeps/{{base}}.csv",
    log:
        "logs/sweeps/{base}_table.log",
    params:
        cfgs=sweep_cfgs,
        code=code_version("summary"),
    script:
        "../scripts/sweep_table.py"


rule phase_diagram:
    input:
        f"{RESULTS}/sweeps/{{base}}.csv",
    output:
        png=report(
            f"{RESULTS}/figures/{{base}}_phase.png",
            caption="../report/phase.rst",
            category="sweeps",
            labels={"sweep": "{base}", "figure": "phase diagram"},
        ),
        pdf=f"{RESULTS}/figures/{{base}}_phase.pdf",
    log:
        "logs/sweeps/{base}_phase.log",
    params:
        code=code_version("figure"),
    script:
        "../scripts/phase_diagram.py"


# The README's headline image (tracked in git): made only on request (`snakemake readme_figure`),
# so that a run of the default target leaves `git status` clean.
rule readme_figure:
    input:
        f"{RESULTS}/figures/fig1a_trajectory.png",
    output:
        "docs/img/fig1a_trajectory.png",
    log:
        "logs/readme_figure.log",
    localrule: True
    shell:
        "cp {input} {output} 2> {log}"
