from simbias import logs
from simbias.stages import flow

logs.to_file(snakemake.log[0])
flow.run_flow_group(
    snakemake.params.points,
    snakemake.params.cfgs,
    list(snakemake.input.data),
    list(snakemake.input.sgd),
    list(snakemake.output),
    checkpoint_dir=snakemake.params.checkpoint,
)
