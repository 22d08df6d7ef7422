from simbias import logs
from simbias.stages import summary

logs.to_file(snakemake.log[0])
summary.sweep_table(list(snakemake.input), snakemake.params.cfgs, snakemake.output[0])
