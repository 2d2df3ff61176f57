"""Best run of one block (its values are fixed by later blocks of the round)."""

from physweep.io import read_json, write_yaml
from physweep.jobs import start_job
from physweep.select.rank import block_winner

log = start_job(snakemake.log[0])
meta = snakemake.params.meta["runs"]
runs = {
    name: {"eval": ev, "decision": read_json(dec), "knobs": snakemake.params.knobs[name],
           "replicate": meta[name]["replicate"]}
    for name, ev, dec in zip(snakemake.params.runs, snakemake.input.evals,
                             snakemake.input.decisions, strict=True)
}
result = block_winner(runs, snakemake.params.objective)
result["block"] = snakemake.wildcards.block
log.info("block %s: best %s", result["block"], result["best"]["run"])
write_yaml(snakemake.output[0], result)
