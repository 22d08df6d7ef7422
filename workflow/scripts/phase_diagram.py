from simbias import logs
from simbias.figures import phase

logs.to_file(snakemake.log[0])
phase.phase_diagram(
    snakemake.wildcards.base,
    snakemake.input[0],
    snakemake.output.png,
    snakemake.output.pdf,
)
