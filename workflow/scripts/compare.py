from simbias import logs
from simbias.stages import compare

logs.to_file(snakemake.log[0])
compare.compare(
    snakemake.wildcards.regime,
    snakemake.params.cfg,
    snakemake.input.data,
    snakemake.input.sgd,
    snakemake.input.flow,
    snakemake.output.nc,
    snakemake.output.csv,
    brute_path=_brute if isinstance(_brute := snakemake.input.brute, str) else next(iter(_brute), None),
)
