from simbias import logs
from simbias.stages import sgd

logs.to_file(snakemake.log[0])
sgd.run_sgd_group(
    snakemake.params.points,
    snakemake.params.cfgs,
    list(snakemake.input.data),
    list(snakemake.output),
    checkpoint_path=snakemake.params.checkpoint,
    checkpoint_every_steps=snakemake.resources.checkpoint_every_steps,
    checkpoint_every_seconds=snakemake.resources.checkpoint_every_seconds,
)
