from simbias import logs, stages

logs.to_file(snakemake.log[0])
stages.run_brute_force(
    snakemake.wildcards.regime,
    snakemake.params.cfg,
    snakemake.input.data,
    snakemake.input.sgd,
    snakemake.output[0],
)
