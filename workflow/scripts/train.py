"""Train one run to the probe point, or resume it from the probe checkpoint to the end."""

import sys
from pathlib import Path

from physweep.jobs import start_job
from physweep.plan.spec import build_spec, winner_knobs
from physweep.train.loop import PREEMPTED_EXIT_CODE, train_run

log = start_job(snakemake.log[0], snakemake.threads)
winners = {src: winner_knobs(path) for src, path in
           zip(snakemake.params.sources, snakemake.input.winners, strict=True)}
spec = build_spec(snakemake.params.template, winners)
spec["train"]["threads"] = snakemake.threads
result = train_run(
    spec,
    data_dir=Path(snakemake.input.train).parent,
    checkpoint_out=Path(snakemake.output.checkpoint),
    log_out=Path(snakemake.output.log),
    stop_fraction=float(snakemake.params.stop_fraction),
    resume_from=Path(snakemake.input.probe) if snakemake.params.resume else None,
)
log.info("training finished: %s", result)
if result["status"] == "preempted":
    sys.exit(PREEMPTED_EXIT_CODE)
