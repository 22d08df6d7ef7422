rule run_sgd:
    input:
        data=f"{RESULTS}/{{regime}}/data.nc",
    output:
        f"{RESULTS}/{{regime}}/sgd.nc",
    log:
        "logs/{regime}/run_sgd.log",
    benchmark:
        "benchmarks/out/{regime}/run_sgd.tsv"
    params:
        cfg=regime_cfg,
    script:
        "../scripts/run_sgd.py"
