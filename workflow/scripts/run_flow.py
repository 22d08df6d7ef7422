from simbias import logs, stages

logs.to_file(snakemake.log[0])
stages.run_flow_stage(
    snakemake.wildcards.regime,
    snakemake.params.cfg,
    snakemake.input.data,
    snakemake.input.sgd,
    snakemake.output[0],
    checkpoint_path=snakemake.params.checkpoint,
)
