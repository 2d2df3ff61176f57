"""Evaluate one checkpoint (a run's or the reference model's) with the small or full suite."""

from pathlib import Path

from physweep.configs import from_dict
from physweep.evaluate.suite import EvalSuite, evaluate_checkpoint
from physweep.jobs import start_job

log = start_job(snakemake.log[0], snakemake.threads, gpu=True)
suite = from_dict(
    EvalSuite,
    dict(snakemake.params.suite, name=snakemake.params.suite_name,
         thresholds=dict(snakemake.params.thresholds)),
    where=f"preset eval.{snakemake.params.suite_name}",
)
data_dir = Path(snakemake.input[suite.splits[0]]).parent  # the suite's split files
reference = snakemake.input.get("reference")  # absent when this is the reference's own eval
summary = evaluate_checkpoint(
    Path(snakemake.input.checkpoint), data_dir, suite,
    Path(snakemake.output[0]), threads=snakemake.threads,
    reference=Path(reference) if reference else None,
)
log.info("summary: %s", summary)
