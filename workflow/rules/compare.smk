rule compare:
    input:
        data=f"{RESULTS}/{{regime}}/data.nc",
        sgd=f"{RESULTS}/{{regime}}/sgd.nc",
        flow=f"{RESULTS}/{{regime}}/flow.nc",
        brute=brute_force_input,
    output:
        nc=f"{RESULTS}/{{regime}}/comparison.nc",
        csv=report(
            f"{RESULTS}/{{regime}}/comparison.csv",
            caption="../report/comparison.rst",
            category="{regime}",
            subcategory="comparison with theory",
            labels={"regime": "{regime}", "table": "comparison (per replica)"},
        ),
    log:
        "logs/{regime}/compare.log",
    params:
        cfg=regime_cfg,
        code=code_version("compare"),
    script:
        "../scripts/compare.py"


rule summary:
    input:
        expand(f"{RESULTS}/{{regime}}/comparison.csv", regime=TARGETS["default"]),
    output:
        report(
            f"{RESULTS}/summary.csv",
            caption="../report/summary.rst",
            category="summary",
            labels={"table": "summary (per regime)"},
        ),
    log:
        "logs/summary.log",
    script:
        "../scripts/summary.py"


use rule summary as summary_extensions with:
    input:
        expand(f"{RESULTS}/{{regime}}/comparison.csv", regime=TARGETS["extensions"]),
    output:
        report(
            f"{RESULTS}/summary_extensions.csv",
            caption="../report/summary.rst",
            category="summary",
            labels={"table": "summary (extension regimes)"},
        ),
    log:
        "logs/summary_extensions.log",


use rule summary as summary_paper with:
    input:
        expand(f"{RESULTS}/{{regime}}/comparison.csv", regime=TARGETS["paper"]),
    output:
        report(
            f"{RESULTS}/summary_paper.csv",
            caption="../report/summary.rst",
            category="summary",
            labels={"table": "summary (paper-length regimes)"},
        ),
    log:
        "logs/summary_paper.log",
