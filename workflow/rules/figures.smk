rule figure:
    input:
        data=f"{RESULTS}/{{regime}}/data.nc",
        sgd=f"{RESULTS}/{{regime}}/sgd.nc",
        flow=f"{RESULTS}/{{regime}}/flow.nc",
        comparison=f"{RESULTS}/{{regime}}/comparison.nc",
    output:
        png=report(
            f"{RESULTS}/figures/{{regime}}_{{kind}}.png",
            caption="../report/figure.rst",
            category="{regime}",
            subcategory="figures",
            labels={"regime": "{regime}", "figure": "{kind}"},
        ),
        pdf=f"{RESULTS}/figures/{{regime}}_{{kind}}.pdf",
    log:
        "logs/{regime}/figure_{kind}.log",
    params:
        cfg=regime_cfg,
        code=code_version("figure"),
    script:
        "../scripts/figure.py"


rule phase_diagram:
    input:
        lambda wc: expand(
            f"{RESULTS}/{{regime}}/comparison.csv", regime=sweep_points(wc)
        ),
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
        cfgs=sweep_cfgs,
        code=code_version("figure"),
    script:
        "../scripts/phase_diagram.py"
