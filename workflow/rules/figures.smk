rule figure:
    input:
        data=f"{RESULTS}/{{regime}}/data.nc",
        sgd=f"{RESULTS}/{{regime}}/sgd.nc",
        flow=f"{RESULTS}/{{regime}}/flow.nc",
        comparison=f"{RESULTS}/{{regime}}/comparison.nc",
    output:
        png=f"{RESULTS}/figures/{{regime}}_{{kind}}.png",
        pdf=f"{RESULTS}/figures/{{regime}}_{{kind}}.pdf",
    params:
        cfg=regime_cfg,
    log:
        "logs/{regime}/figure_{kind}.log",
    script:
        "../scripts/figure.py"
