from simbias import logs
from simbias.stages import data

logs.to_file(snakemake.log[0])
data.make_data(snakemake.wildcards.regime, snakemake.params.cfg, snakemake.output[0])
