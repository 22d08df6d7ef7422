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


# a CSV table as an HTML table, so that the report shows it (a CSV can only be downloaded there)
rule table_html:
    input:
        f"{RESULTS}/{{table}}.csv",
    output:
        report(
            f"{RESULTS}/{{table}}.html",
            caption="../report/table.rst",
            category=table_category,
            subcategory=table_subcategory,
            labels=table_labels,
        ),
    log:
        "logs/tables/{table}.log",
    wildcard_constraints:
        table=rf"({'|'.join(SUMMARIES) or '(?!)'})|({UNGROUPED})/comparison",
    localrule: True
    params:
        code=code_version("table_html"),
    script:
        "../scripts/table_html.py"
