"""The pipeline's stages: one module per rule file (workflow/rules/*.smk), each stage a
short function that reads its inputs, calls the library and writes NetCDF through
:mod:`simbias.storage` (docs/architecture.md). The Snakemake scripts only call these.

- :mod:`.data`: data.nc (rule make_data)
- :mod:`.sgd`: sgd.nc, one regime or a sweep's grid points as one call (rule run_sgd)
- :mod:`.brute_force`: SGD continued past the hand-over (rule run_brute_force)
- :mod:`.flow`: flow.nc, the manifold flow from SGD's last iterate (rule run_flow)
- :mod:`.compare`: comparison.nc/.csv against the theorems (rule compare)
- :mod:`.summary`: summary.csv and the sweeps' tables (rules summary, sweep_table)
"""
