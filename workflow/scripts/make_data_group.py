from simbias import logs, stages

logs.to_file(snakemake.log[0])
stages.make_data_group(snakemake.params.points, snakemake.params.cfgs, list(snakemake.output))
