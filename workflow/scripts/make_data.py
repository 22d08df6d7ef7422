from simbias import logs, stages

logs.to_file(snakemake.log[0])
stages.make_data(snakemake.wildcards.regime, snakemake.params.cfg, snakemake.output[0])
