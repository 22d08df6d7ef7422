rule run_sgd:
    input:
        data=f"{RESULTS}/{{regime}}/data.nc",
    output:
        f"{RESULTS}/{{regime}}/sgd.nc",
    log:
        "logs/{regime}/run_sgd.log",
    benchmark:
        "benchmarks/out/{regime}/run_sgd.tsv"
    wildcard_constraints:
        regime=UNGROUPED,
    # the CPU kernel runs one thread per core it is given (OMP_NUM_THREADS, capped at --cores)
    threads: 2
    resources:
        # --gpus=1 on SLURM where the gpu extra is installed (common.smk: sgd_gpus)
        gpu=sgd_gpus,
        checkpoint_every_steps=sgd_setting("checkpoint_every_steps"),
        checkpoint_every_seconds=sgd_setting("checkpoint_every_seconds"),
    params:
        cfg=regime_cfg,
        # editing a library module this stage runs reruns it (see simbias.code_version)
        code=code_version("run_sgd"),
        checkpoint=checkpoint_path,
    script:
        "../scripts/run_sgd.py"
