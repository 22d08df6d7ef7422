from simbias import logs
from simbias.stages import data

logs.to_file(snakemake.log[0])
data.make_data_group(snakemake.params.points, snakemake.params.cfgs, list(snakemake.output))
