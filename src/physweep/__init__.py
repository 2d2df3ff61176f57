"""physweep: the parallel-runs playbook for neural PDE surrogates as a Snakemake workflow."""

__version__ = "0.1.0"
