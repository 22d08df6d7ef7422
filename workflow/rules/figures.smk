rule figure:
    input:
        data=f"{RESULTS}/{{regime}}/data.nc",
        sgd=f"{RESULTS}/{{regime}}/sgd.nc",
        flow=f"{RESULTS}/{{regime}}/flow.nc",
        comparison=f"{RESULTS}/{{regime}}/comparison.nc",
    output:
        png=f"{RESULTS}/figures/{{regime}}_{{kind}}.png",
        pdf=f"{RESULTS}/figures/{{regime}}_{{kind}}.pdf",
    log:
        "logs/{regime}/figure_{kind}.log",
    params:
        cfg=regime_cfg,
    script:
        "../scripts/figure.py"
