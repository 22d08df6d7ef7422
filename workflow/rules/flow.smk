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
    params:
        cfg=regime_cfg,
    script:
        "../scripts/run_flow.py"
