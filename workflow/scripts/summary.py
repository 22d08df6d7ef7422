from simbias import logs
from simbias.stages import summary

logs.to_file(snakemake.log[0])
summary.summarize(list(snakemake.input), snakemake.output[0])
