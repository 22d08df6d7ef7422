from simbias import logs
from simbias.stages import brute_force

logs.to_file(snakemake.log[0])
brute_force.run_brute_force(
    snakemake.wildcards.regime,
    snakemake.params.cfg,
    snakemake.input.data,
    snakemake.input.sgd,
    snakemake.output[0],
)
