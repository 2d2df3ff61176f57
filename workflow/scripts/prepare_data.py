"""Generate the dataset's train/test/ood splits (physweep.physics.dataset)."""

from pathlib import Path

from physweep.configs import from_dict
from physweep.jobs import start_job
from physweep.physics.dataset import DatasetConfig, generate_dataset

start_job(snakemake.log[0], snakemake.threads)
cfg = from_dict(DatasetConfig, dict(snakemake.params.data), where="preset data")
generate_dataset(cfg, Path(snakemake.output.train).parent, progress=True)
