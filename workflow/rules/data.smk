rule make_data:
    output:
        f"{RESULTS}/{{regime}}/data.nc",
    params:
        cfg=regime_data_cfg,
    log:
        "logs/{regime}/make_data.log",
    script:
        "../scripts/make_data.py"
