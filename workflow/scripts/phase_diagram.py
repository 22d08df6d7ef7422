from simbias import figures, logs

logs.to_file(snakemake.log[0])
figures.phase_diagram(
    snakemake.wildcards.base,
    list(snakemake.input),
    snakemake.params.cfgs,
    snakemake.output.png,
    snakemake.output.pdf,
)
