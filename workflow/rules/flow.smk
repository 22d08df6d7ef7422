rule run_flow:
    input:
        data=f"{RESULTS}/{{regime}}/data.nc",
        sgd=f"{RESULTS}/{{regime}}/sgd.nc",
    output:
        f"{RESULTS}/{{regime}}/flow.nc",
    log:
        "logs/{regime}/run_flow.log",
    benchmark:
        "benchmarks/out/{regime}/run_flow.tsv"
    wildcard_constraints:
        regime=UNGROUPED,
    # one flow process per thread over the replicas (simbias.flow_pool.run_flows; Snakemake
    # passes it as OMP_NUM_THREADS and caps it at --cores); Ctrl-C or SIGTERM ends them at once
    threads: 4
    params:
        cfg=regime_cfg,
        code=code_version("run_flow"),
        # finished replicas, kept outside the output so a killed job resumes from them
        checkpoint=lambda wildcards: f"{RESULTS}/.checkpoints/{wildcards.regime}/run_flow",
    script:
        "../scripts/run_flow.py"
