"""runs/<run>/training.json: which shared training a run's checkpoints come from."""

from physweep.io import write_json
from physweep.jobs import start_job

log = start_job(snakemake.log[0])
record = snakemake.params.record
write_json(snakemake.output[0], record)
log.info("%s: training %s (shared with %s)", record["run"], record["training"],
         ", ".join(record["shared_with"]) or "no other run")
