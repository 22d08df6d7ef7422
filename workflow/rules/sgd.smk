rule run_sgd:
    input:
        data=f"{RESULTS}/{{regime}}/data.nc",
    output:
        f"{RESULTS}/{{regime}}/sgd.nc",
    params:
        cfg=regime_cfg,
    log:
        "logs/{regime}/run_sgd.log",
    benchmark:
        "benchmarks/out/{regime}/run_sgd.tsv"
    script:
        "../scripts/run_sgd.py"
