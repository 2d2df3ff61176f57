"""Train one training (shared by the runs that differ only in evaluation-only knobs) to the
probe point, or resume it from the probe checkpoint to the end. The template is the training's
(``physweep.plan.spec.training_template``); what is trained is its training spec.

Preemption (SIGTERM / SIGUSR1, e.g. a SLURM requeue or ``scancel --signal=USR1``): the trainer
finishes its step and saves everything to ``<checkpoint>.partial`` next to the output, and the
job exits with PREEMPTED_EXIT_CODE (75). The next attempt of the same job (Snakemake
``--retries``, a SLURM requeue) resumes from that file — bit for bit the same result as an
uninterrupted run — and renames it to the output checkpoint when done. The partial file is not
a Snakemake output, so a failed attempt's clean-up leaves it in place; one written for another
run spec is discarded. The comparison is on the run's identity (``run_identity``: the spec
without the machine), so an attempt with another thread count or device still resumes; the
job's threads are the machine's and go to the trainer, not into the spec.
"""

import os
import sys
from pathlib import Path

from physweep.jobs import start_job
from physweep.model.surrogate import load_checkpoint
from physweep.plan.spec import build_spec, training_identity, training_spec, winner_knobs
from physweep.train.loop import PREEMPTED_EXIT_CODE, run_identity, train_run
from physweep.train.shared import find_trained, record_identity, reuse

log = start_job(snakemake.log[0], snakemake.threads, gpu=True)
winners = {src: winner_knobs(path) for src, path in
           zip(snakemake.params.sources, snakemake.input.winners, strict=True)}
spec = dict(training_spec(build_spec(snakemake.params.template, winners)),
            run=f"training {snakemake.wildcards.training}")
checkpoint = Path(snakemake.output.checkpoint)
identity = training_identity(spec)
# the same training spec already trained by another training of the round (e.g. a block that
# takes an earlier block's winner values, which that winner trained): take it, do not retrain
same = find_trained(checkpoint.parent, identity)
if same is not None:
    reuse(same, {"checkpoint.pt": checkpoint, "train_log.nc": Path(snakemake.output.log)})
    record_identity(checkpoint.parent, identity, reused_from=str(same))
    log.info("training identity %s already trained in %s: reused, not retrained", identity, same)
    sys.exit(0)
partial = checkpoint.with_name(checkpoint.name + ".partial")
resume_from = Path(snakemake.input.probe) if snakemake.params.resume else None
if partial.exists():
    saved = load_checkpoint(partial)
    if run_identity(saved.get("spec") or {}) == run_identity(spec):
        log.info("resuming the preempted attempt from %s (step %d)", partial, saved["step"])
        resume_from = partial
    else:
        log.warning("discarding %s: written for another run spec", partial)
        partial.unlink()
    del saved
result = train_run(
    spec,
    data_dir=Path(snakemake.input.train).parent,
    checkpoint_out=partial,
    log_out=Path(snakemake.output.log),
    stop_fraction=float(snakemake.params.stop_fraction),
    resume_from=resume_from,
    threads=snakemake.threads,
)
log.info("training finished: %s", result)
if result["status"] == "preempted":
    log.warning("preempted at step %d: checkpoint kept in %s for the next attempt",
                result["step"], partial)
    sys.exit(PREEMPTED_EXIT_CODE)
os.replace(partial, checkpoint)
record_identity(checkpoint.parent, identity)
