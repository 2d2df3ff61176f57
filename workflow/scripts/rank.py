"""Final ranking table and winners file of the round."""

from pathlib import Path

from physweep.io import write_text, write_yaml
from physweep.jobs import start_job
from physweep.select.rank import rank, run_records

log = start_job(snakemake.log[0])
runs = run_records(
    snakemake.params.runs, snakemake.input.evals, snakemake.input.decisions, snakemake.input.logs,
    snakemake.params.meta["runs"],
)
full = dict(zip(snakemake.params.promoted, map(Path, snakemake.input.full), strict=True))
table, winners = rank(runs, full, snakemake.params.objective, snakemake.wildcards.round,
                      snakemake.params.meta["swept"])
write_text(snakemake.output.ranking, table.to_csv(index=False))
write_yaml(snakemake.output.winners, winners)
log.info("winner: %s (%s)", winners["winners"], winners["reason"])
