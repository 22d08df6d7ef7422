from simbias import logs, tables

logs.to_file(snakemake.log[0])
tables.csv_to_html(snakemake.input[0], snakemake.output[0], snakemake.wildcards.table)
