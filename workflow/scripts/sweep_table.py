from simbias import logs, stages

logs.to_file(snakemake.log[0])
stages.sweep_table(list(snakemake.input), snakemake.params.cfgs, snakemake.output[0])
