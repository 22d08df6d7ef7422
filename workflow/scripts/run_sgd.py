from simbias import logs, stages

logs.to_file(snakemake.log[0])
stages.run_sgd(snakemake.wildcards.regime, snakemake.params.cfg, snakemake.input.data, snakemake.output[0])
