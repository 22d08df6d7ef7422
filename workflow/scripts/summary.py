from simbias import logs, stages

logs.to_file(snakemake.log[0])
stages.summarize(list(snakemake.input), snakemake.output[0])
