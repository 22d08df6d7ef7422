from simbias import logs
from simbias.stages import compare

logs.to_file(snakemake.log[0])
compare.compare_group(
    snakemake.params.points,
    snakemake.params.cfgs,
    {
        **{k: list(snakemake.input[k]) for k in ("data", "sgd", "flow")},
        **{k: list(snakemake.output[k]) for k in ("nc", "csv", "html")},
    },
    dict(zip(snakemake.params.brute_points, snakemake.input.brute, strict=True)),
)
