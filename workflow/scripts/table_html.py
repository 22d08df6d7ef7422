from simbias import logs, tables

logs.to_file(snakemake.log[0])
wildcards = dict(snakemake.wildcards.items())
if "regime" in wildcards:
    title = tables.comparison_title(wildcards["regime"])
elif "base" in wildcards:
    title = f"sweep {wildcards['base']}: one row per grid point"
else:
    title = f"{wildcards['summary']}: one row per regime"
tables.csv_to_html(snakemake.input[0], snakemake.output[0], title, snakemake.params.cfg)
