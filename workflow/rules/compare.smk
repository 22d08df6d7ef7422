rule compare:
    input:
        data=f"{RESULTS}/{{regime}}/data.nc",
        sgd=f"{RESULTS}/{{regime}}/sgd.nc",
        flow=f"{RESULTS}/{{regime}}/flow.nc",
        brute=brute_force_input,
    output:
        nc=f"{RESULTS}/{{regime}}/comparison.nc",
        csv=f"{RESULTS}/{{regime}}/comparison.csv",
    log:
        "logs/{regime}/compare.log",
    wildcard_constraints:
        regime=UNGROUPED,
    params:
        cfg=regime_cfg,
        code=code_version("compare"),
    script:
        "../scripts/compare.py"


rule summary:
    input:
        summary_inputs,
    output:
        f"{RESULTS}/{{summary}}.csv",
    log:
        "logs/{summary}.log",
    script:
        "../scripts/summary.py"


# CSV tables as HTML pages, so that the report shows them (a CSV can only be downloaded there);
# a grouped sweep's compare job writes its points' pages itself (sweep_groups.smk)
rule comparison_html:
    input:
        f"{RESULTS}/{{regime}}/comparison.csv",
    output:
        comparison_report(),
    log:
        "logs/tables/{regime}/comparison.log",
    wildcard_constraints:
        regime=UNGROUPED,
    localrule: True
    params:
        cfg=regime_cfg,
        code=code_version("table_html"),
    script:
        "../scripts/table_html.py"


rule summary_html:
    input:
        f"{RESULTS}/{{summary}}.csv",
    output:
        report(
            f"{RESULTS}/{{summary}}.html",
            caption="../report/table_summary.rst",
            category="summary",
            labels={"table": "{summary}"},
        ),
    log:
        "logs/tables/{summary}.log",
    localrule: True
    params:
        cfg=None,
        code=code_version("table_html"),
    script:
        "../scripts/table_html.py"


rule sweep_table_html:
    input:
        f"{RESULTS}/sweeps/{{base}}.csv",
    output:
        report(
            f"{RESULTS}/sweeps/{{base}}.html",
            caption="../report/table_sweep.rst",
            category="sweeps",
            labels={"sweep": "{base}", "table": "grid points"},
        ),
    log:
        "logs/sweeps/{base}_table_html.log",
    localrule: True
    params:
        cfg=None,
        code=code_version("table_html"),
    script:
        "../scripts/table_html.py"
