"""Cross-round page: per round what it inherited, fixed, swept and won; the final configuration."""

from pathlib import Path

from physweep.jobs import start_job
from physweep.report import build_index

start_job(snakemake.log[0])
rounds = snakemake.params.rounds
build_index(
    rounds=dict(zip(rounds, map(Path, snakemake.input.reports), strict=True)),
    winners=dict(zip(rounds, map(Path, snakemake.input.winners), strict=True)),
    out_html=Path(snakemake.output[0]),
    configs=dict(zip(rounds, snakemake.params.configs, strict=True)),
    rankings=dict(zip(rounds, map(Path, snakemake.input.rankings), strict=True)),
    defaults=snakemake.params.defaults,
)
