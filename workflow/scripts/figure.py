from simbias import figures, logs

logs.to_file(snakemake.log[0])
figures.draw(
    snakemake.wildcards.kind,
    snakemake.wildcards.regime,
    snakemake.params.cfg,
    dict(snakemake.input.items()),
    snakemake.output.png,
    snakemake.output.pdf,
)
