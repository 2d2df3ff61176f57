"""Store the round's run table (as `physweep plan` prints it) for the report."""

from physweep.io import write_json
from physweep.jobs import start_job

start_job(snakemake.log[0])
write_json(snakemake.output[0], snakemake.params.records)
