rule compare:
    input:
        data=f"{RESULTS}/{{regime}}/data.nc",
        sgd=f"{RESULTS}/{{regime}}/sgd.nc",
        flow=f"{RESULTS}/{{regime}}/flow.nc",
    output:
        nc=f"{RESULTS}/{{regime}}/comparison.nc",
        csv=f"{RESULTS}/{{regime}}/comparison.csv",
    log:
        "logs/{regime}/compare.log",
    params:
        cfg=regime_cfg,
    script:
        "../scripts/compare.py"


rule summary:
    input:
        expand(f"{RESULTS}/{{regime}}/comparison.csv", regime=REGIMES),
    output:
        f"{RESULTS}/summary.csv",
    log:
        "logs/summary.log",
    script:
        "../scripts/summary.py"
