from simbias import logs
from simbias.stages import flow

logs.to_file(snakemake.log[0])
flow.run_flow_stage(
    snakemake.wildcards.regime,
    snakemake.params.cfg,
    snakemake.input.data,
    snakemake.input.sgd,
    snakemake.output[0],
    checkpoint_path=snakemake.params.checkpoint,
)
