from simbias import logs
from simbias.stages import brute_force

logs.to_file(snakemake.log[0])
brute_force.run_brute_force(
    snakemake.wildcards.regime,
    snakemake.params.cfg,
    snakemake.input.data,
    snakemake.input.sgd,
    snakemake.output[0],
    checkpoint_path=snakemake.params.checkpoint,
    checkpoint_every_steps=snakemake.resources.checkpoint_every_steps,
    checkpoint_every_seconds=snakemake.resources.checkpoint_every_seconds,
)
