import json

from simbias import figures, logs, storage

logs.to_file(snakemake.log[0])
cfg = json.loads(storage.open_dataset(snakemake.input.comparison).attrs["config_json"])
for kind in snakemake.params.kinds:
    figures.draw(
        kind,
        snakemake.wildcards.regime,
        cfg,
        dict(snakemake.input.items()),
        snakemake.output[f"{kind}_png"],
        snakemake.output[f"{kind}_pdf"],
    )
