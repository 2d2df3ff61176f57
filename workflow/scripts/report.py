"""The round's self-contained HTML report (and its figures for Snakemake's report)."""

from pathlib import Path

from physweep.jobs import start_job
from physweep.report import build_round_report

start_job(snakemake.log[0])
runs = snakemake.params.runs
evals = dict(zip(runs, map(Path, snakemake.input.evals), strict=True))
evals.update(zip(snakemake.params.promoted, map(Path, snakemake.input.full), strict=True))
build_round_report(
    round_name=snakemake.wildcards.round,
    ranking_csv=Path(snakemake.input.ranking),
    decisions=dict(zip(runs, map(Path, snakemake.input.decisions), strict=True)),
    train_logs=dict(zip(runs, map(Path, snakemake.input.logs), strict=True)),
    eval_files=evals,
    winners_yaml=Path(snakemake.input.winners),
    plan_json=Path(snakemake.input.plan),
    out_html=Path(snakemake.output.html),
    figures_dir=Path(snakemake.output.figures),
    tables_dir=Path(snakemake.output.tables),
    rerun_hint=snakemake.params.rerun_hint,
)
