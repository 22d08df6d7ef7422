rule make_data:
    output:
        f"{RESULTS}/{{regime}}/data.nc",
    log:
        "logs/{regime}/make_data.log",
    wildcard_constraints:
        regime=UNGROUPED,
    params:
        cfg=regime_data_cfg,
        code=code_version("make_data"),
    script:
        "../scripts/make_data.py"
