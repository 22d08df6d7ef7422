from simbias import figures, logs

logs.to_file(snakemake.log[0])
figures.phase_diagram(
    snakemake.wildcards.base,
    snakemake.input[0],
    snakemake.output.png,
    snakemake.output.pdf,
)
