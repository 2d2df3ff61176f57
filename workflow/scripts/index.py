"""Cross-round page linking every round report and the winners each round inherited."""

from pathlib import Path

from physweep.jobs import start_job
from physweep.report import build_index

start_job(snakemake.log[0])
rounds = snakemake.params.rounds
build_index(
    rounds=dict(zip(rounds, map(Path, snakemake.input.reports), strict=True)),
    winners=dict(zip(rounds, map(Path, snakemake.input.winners), strict=True)),
    out_html=Path(snakemake.output[0]),
)
