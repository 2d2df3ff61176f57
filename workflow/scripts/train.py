"""Train one training (shared by the runs that differ only in evaluation-time knobs) to the
probe point, or resume it from the probe checkpoint to the end: physweep.train.job (preemption,
resuming, reusing an identical training)."""

import sys
from pathlib import Path

from physweep.jobs import start_job
from physweep.plan.spec import build_spec, training_identity, training_spec, winner_knobs
from physweep.train.job import run_training_job

log = start_job(snakemake.log[0], snakemake.threads, gpu=True)
winners = {src: winner_knobs(path) for src, path in
           zip(snakemake.params.sources, snakemake.input.winners, strict=True)}
spec = dict(training_spec(build_spec(snakemake.params.template, winners)),
            run=f"training {snakemake.wildcards.training}")
sys.exit(run_training_job(
    spec, training_identity(spec), data_dir=Path(snakemake.input.train).parent,
    checkpoint=Path(snakemake.output.checkpoint), log_out=Path(snakemake.output.log),
    stop_fraction=float(snakemake.params.stop_fraction),
    probe=Path(snakemake.input.probe) if snakemake.params.resume else None,
    threads=snakemake.threads, log=log))
