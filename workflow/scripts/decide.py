"""Early-stop decision of one run at the probe point."""

from pathlib import Path

from physweep.io import read_json, write_json
from physweep.jobs import start_job
from physweep.select.early_stop import decide

log = start_job(snakemake.log[0])
es = snakemake.params.early_stop
result = decide(
    run=snakemake.wildcards.run,
    is_baseline=bool(snakemake.params.is_baseline),
    run_eval=Path(snakemake.input.run),
    baseline=read_json(snakemake.input.baseline),
    objective=snakemake.params.objective,
    sigma_factor=float(es["sigma_factor"]),
    probe_fraction=float(es["probe_fraction"]),
    enabled=bool(snakemake.params.early_stop_enabled),
)
log.info("%s: %s (%s)", result["run"], result["decision"], result["reason"])
write_json(snakemake.output[0], result)
