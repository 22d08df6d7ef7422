import sys
from pathlib import Path

from simbias.config import ConfigError, data_subset, validate_config, load_schema

try:
    _validated = validate_config(
        config, load_schema(workflow.source_path("../schemas/config.schema.yaml"))
    )
except ConfigError as exc:
    sys.stderr.write(f"config error: {exc}\n")
    sys.exit(1)
config.clear()
config.update(_validated)

RESULTS = config["results"]
REGIMES = list(config["regimes"])
FIGURE_KINDS = ["singular_values", "trajectory", "neuron_pca"]


wildcard_constraints:
    regime="|".join(REGIMES),
    kind="|".join(FIGURE_KINDS),
    ext="png|pdf",


def regime_cfg(wildcards):
    """A regime's whole resolved config entry (params rerun the job when it changes)."""
    return config["regimes"][wildcards.regime]


def regime_data_cfg(wildcards):
    """Only the fields the data stage depends on."""
    return data_subset(config["regimes"][wildcards.regime])


def all_figures():
    return expand(
        f"{RESULTS}/figures/{{regime}}_{{kind}}.{{ext}}",
        regime=REGIMES,
        kind=FIGURE_KINDS,
        ext=["png", "pdf"],
    )
