"""The round's early-stop reference: mean and sigma of the baseline replicates' probe scores."""

from pathlib import Path

from physweep.io import write_json
from physweep.jobs import start_job
from physweep.select.early_stop import baseline_reference

log = start_job(snakemake.log[0])
result = baseline_reference(
    [Path(p) for p in snakemake.input],
    snakemake.params.objective,
    int(snakemake.params.early_stop.get("bootstrap_samples", 1000)),
)
log.info("baseline probe: mean %.4g, sigma %.4g (%s)", result["mean"], result["sigma"],
         result["sigma_method"])
write_json(snakemake.output[0], result)
