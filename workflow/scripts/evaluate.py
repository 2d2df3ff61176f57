"""Evaluate one checkpoint (a run's training or the reference model's) with the small or full
suite; a run's evaluation uses the run's own evaluation settings (its spec's cadence, guidance)."""

from pathlib import Path

from physweep.configs import from_dict
from physweep.evaluate.suite import EvalSuite, evaluate_checkpoint
from physweep.jobs import start_job
from physweep.plan.spec import build_spec, winner_knobs

log = start_job(snakemake.log[0], snakemake.threads, gpu=True)
suite = from_dict(
    EvalSuite,
    dict(snakemake.params.suite, name=snakemake.params.suite_name,
         thresholds=dict(snakemake.params.thresholds)),
    where=f"preset eval.{snakemake.params.suite_name}",
)
data_dir = Path(snakemake.input[suite.splits[0]]).parent  # the suite's split files
run_spec = None
if snakemake.params.get("template"):  # a run's eval (the reference's own eval has none)
    winners = {src: winner_knobs(path) for src, path in
               zip(snakemake.params.sources, snakemake.input.winners, strict=True)}
    run_spec = build_spec(snakemake.params.template, winners)
reference = snakemake.input.get("reference")  # absent when this is the reference's own eval
summary = evaluate_checkpoint(
    Path(snakemake.input.checkpoint), data_dir, suite,
    Path(snakemake.output[0]), threads=snakemake.threads,
    reference=Path(reference) if reference else None, run_spec=run_spec,
)
log.info("summary: %s", summary)
