from simbias import logs, stages

logs.to_file(snakemake.log[0])
stages.run_flow_group(
    snakemake.params.points,
    snakemake.params.cfgs,
    list(snakemake.input.data),
    list(snakemake.input.sgd),
    list(snakemake.output),
    checkpoint_dir=snakemake.params.checkpoint,
)
