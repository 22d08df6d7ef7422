rule run_brute_force:
    input:
        data=f"{RESULTS}/{{regime}}/data.nc",
        sgd=f"{RESULTS}/{{regime}}/sgd.nc",
    output:
        f"{RESULTS}/{{regime}}/brute_force.nc",
    log:
        "logs/{regime}/run_brute_force.log",
    benchmark:
        "benchmarks/out/{regime}/run_brute_force.tsv"
    resources:
        # sgd.checkpoint_every_*: the brute-force run is SGD continued, checkpointed alike
        checkpoint_every_steps=sgd_setting("checkpoint_every_steps"),
        checkpoint_every_seconds=sgd_setting("checkpoint_every_seconds"),
    params:
        cfg=regime_cfg,
        code=code_version("run_brute_force"),
        # outside its output, so Snakemake never deletes it (as run_sgd's)
        checkpoint=lambda wildcards: f"{RESULTS}/.checkpoints/{wildcards.regime}/run_brute_force.npz",
    script:
        "../scripts/run_brute_force.py"


rule brute_force_figures:
    input:
        data=f"{RESULTS}/{{regime}}/data.nc",
        sgd=f"{RESULTS}/{{regime}}/sgd.nc",
        flow=f"{RESULTS}/{{regime}}/flow.nc",
        comparison=f"{RESULTS}/{{regime}}/comparison.nc",
        brute=f"{RESULTS}/{{regime}}/brute_force.nc",
    output:
        **figure_outputs(BRUTE_KINDS),
    log:
        "logs/{regime}/brute_force_figures.log",
    params:
        kinds=BRUTE_KINDS,
        code=code_version("figure"),
    script:
        "../scripts/figure.py"
