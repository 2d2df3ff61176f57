"""Promote the top-k gate-passing runs of the round to the full evaluation."""

from physweep.io import read_json, write_json
from physweep.jobs import start_job
from physweep.select.rank import promote

log = start_job(snakemake.log[0])
meta = snakemake.params.meta["runs"]
runs = {
    name: {"eval": ev, "decision": read_json(dec), "replicate": meta[name]["replicate"]}
    for name, ev, dec in zip(snakemake.params.runs, snakemake.input.evals,
                             snakemake.input.decisions, strict=True)
}
result = promote(runs, snakemake.params.objective, int(snakemake.params.k))
log.info("promoted: %s", result["promoted"])
write_json(snakemake.output[0], result)
