"""Train the reference U-Net of the dataset (physweep.train.reference)."""

import sys
from pathlib import Path

from physweep.jobs import start_job
from physweep.train.loop import PREEMPTED_EXIT_CODE, train_run
from physweep.train.reference import reference_spec

log = start_job(snakemake.log[0], snakemake.threads, gpu=True)
spec = reference_spec(dict(snakemake.params.reference), dict(snakemake.params.train),
                      snakemake.params.dataset)
result = train_run(spec, data_dir=Path(snakemake.input.train).parent,
                   checkpoint_out=Path(snakemake.output.checkpoint),
                   log_out=Path(snakemake.output.log), threads=snakemake.threads)
log.info("reference training finished: %s", result)
if result["status"] == "preempted":  # Snakemake removes the outputs of a failed job: retrain
    sys.exit(PREEMPTED_EXIT_CODE)
