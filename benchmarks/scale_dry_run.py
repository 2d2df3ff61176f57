"""Scale check: plan and dry-run a synthetic round of 1,000 runs (10x10x10 grid), and time
``snakemake -n`` of it next to a bare Snakefile with the same jobs per rule and the same chain
shape, measured in the same process run. Target: physweep / bare <= 1.5.

Before any decision exists the dry run lists, per run, train_probe -> eval_probe -> decide
(plus the data, the round's baseline reference, promotion, ranking and report); what follows a
decision (train_finish, small_eval, full_eval) enters the DAG when the decide checkpoints have
run. The bare Snakefile has the same jobs as plain `touch` rules with a log and a benchmark
file each: the ratio is what physweep's planning, input functions, scripts and checkpoints
cost on top of Snakemake's own work for that many jobs.

    .venv/bin/python benchmarks/scale_dry_run.py [--levels 10] [--repeat 1] [--profile]

``--profile`` also writes a cProfile of the physweep dry run (top functions by cumulative time).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def synthetic_round(levels: int) -> dict:
    lrs = [round(1e-4 * (1 + 9 * i / (levels - 1)), 8) for i in range(levels)]
    warmups = [round(0.01 + 0.04 * i / (levels - 1), 6) for i in range(levels)]
    emas = [round(0.99 + 0.0099 * i / (levels - 1), 6) for i in range(levels)]
    return {"name": "round_scale", "title": "synthetic scale round", "objective": "nrmse",
            "blocks": [{"name": "grid", "design": {"type": "grid"},
                        "knobs": {"lr": lrs, "warmup": warmups, "ema": emas}}]}


def job_counts(dry_run_output: str) -> dict[str, int]:
    """Per-rule job counts from the 'Job stats' table of a dry run."""
    table = dry_run_output.split("Job stats:", 1)[1]
    counts = {}
    for line in table.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)\s*$", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def bare_snakefile(counts: dict[str, int], n_runs: int, baselines: int = 3) -> str:
    """Same number of jobs per rule; per-run rules form one chain per run (each step reads the
    previous one and has a log and a benchmark file); ``baseline_probe`` reads the first
    ``baselines`` runs' step before ``decide`` and every ``decide`` reads its output (as
    physweep's do); the other singletons read every per-run output of the last per-run rule.
    Run names are constrained by a pattern, not a list."""
    per_run = [r for r, c in counts.items() if c == n_runs]
    # the round's own target rule is this file's `all`
    singles = [r for r, c in counts.items() if c != n_runs and not r.startswith("round_")]
    order = [r for r in ("train_probe", "eval_probe", "decide") if r in per_run]
    order += [r for r in per_run if r not in order]
    fan_in = "baseline_probe" if "baseline_probe" in singles and "decide" in order else None
    lines = [f"RUNS = [f'run~{{i:04d}}_lr~{{i % 10}}e-4' for i in range({n_runs})]",
             f"BASE = RUNS[:{baselines}]",
             "wildcard_constraints:", "    run=r'run~\\d{4}_lr~\\de-4'", "",
             "rule all:", "    input: " + ", ".join(f"'{s}.done'" for s in singles
                                                    if s not in ("prepare_data", fan_in)) or "[]",
             ""]
    data = "data/train.nc"
    lines += ["rule prepare_data:", f"    output: '{data}'", "    shell: 'touch {output}'", ""]
    prev = None
    for rule in order:
        inp = [f"'{data}'"] if prev is None else [f"'runs/{{run}}/{prev}.out'"]
        if rule == "decide" and fan_in:
            lines += [f"rule {fan_in}:", f"    input: expand('runs/{{b}}/{prev}.out', b=BASE)",
                      f"    output: '{fan_in}.done'", "    shell: 'touch {output}'", ""]
            inp.append(f"'{fan_in}.done'")
        lines += [f"rule {rule}:", f"    input: {', '.join(inp)}",
                  f"    output: 'runs/{{run}}/{rule}.out'",
                  f"    log: 'logs/{{run}}/{rule}.log'",
                  f"    benchmark: 'benchmarks/{{run}}/{rule}.tsv'", "    threads: 1",
                  "    resources: gpu=1, mem_mb=2000, runtime=10",
                  "    shell: 'touch {output}'", ""]
        prev = rule
    for s in singles:
        if s in ("prepare_data", fan_in):
            continue
        for k in range(counts[s]):
            name = s if k == 0 else f"{s}_{k}"
            lines += [f"rule {name}:", f"    input: expand('runs/{{run}}/{prev}.out', run=RUNS)",
                      f"    output: '{s}.done'" if k == 0 else f"    output: '{name}.done'",
                      "    shell: 'touch {output}'", ""]
    return "\n".join(lines)


def timed(cmd: list[str], cwd: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return dt, proc.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=int, default=10, help="grid levels per knob (runs=levels^3)")
    ap.add_argument("--repeat", type=int, default=1, help="timed dry runs of each (min is kept)")
    ap.add_argument("--profile", action="store_true", help="cProfile the physweep dry run")
    args = ap.parse_args(argv)
    n_runs = args.levels ** 3
    with tempfile.TemporaryDirectory(prefix="physweep-scale-") as tmp:
        tmp = Path(tmp)
        (tmp / "rounds").mkdir()
        (tmp / "rounds" / "round_scale.yaml").write_text(
            yaml.safe_dump(synthetic_round(args.levels)))
        cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
        cfg["rounds_dir"] = str(tmp / "rounds")
        cfg["max_runs"] = n_runs + 3  # the grid and the baseline replicates (default 500)
        (tmp / "config.yaml").write_text(yaml.safe_dump(cfg))
        work = tmp / "physweep"
        work.mkdir()

        t0 = time.perf_counter()
        plan = subprocess.run([str(Path(sys.executable).parent / "physweep"), "plan",
                               "round_scale", "--configfile", str(tmp / "config.yaml"), "--json"],
                              cwd=work, capture_output=True, text=True, timeout=600)
        t_plan = time.perf_counter() - t0
        if plan.returncode != 0:
            raise SystemExit(f"physweep plan failed:\n{plan.stderr[-3000:]}")

        smk = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-n", "--cores", "2", "round_scale",
               "--configfile", str(tmp / "config.yaml")]
        t_phys, out = min(timed(smk, work) for _ in range(args.repeat))
        counts = job_counts(out)
        total = sum(counts.values())

        bare = tmp / "bare"
        bare.mkdir()
        # per-run rules: those with one job per planned run (grid + baseline replicates)
        (bare / "Snakefile").write_text(bare_snakefile(counts, counts["train_probe"]))
        bare_cmd = [SNAKEMAKE, "-s", str(bare / "Snakefile"), "-n", "--cores", "2"]
        t_bare, bare_out = min(timed(bare_cmd, bare) for _ in range(args.repeat))
        bare_total = sum(job_counts(bare_out).values())

        print(f"runs: {n_runs}; dry-run jobs: physweep {total} {counts}, bare {bare_total}")
        print(f"physweep plan (CLI, planning + validation): {t_plan:6.2f} s")
        print(f"snakemake -n physweep round:               {t_phys:6.2f} s")
        print(f"snakemake -n bare Snakefile:               {t_bare:6.2f} s")
        print(f"ratio physweep / bare:                     {t_phys / t_bare:6.2f} (target <= 1.5)")

        if args.profile:
            prof = cProfile.Profile()
            sys.argv = smk
            from snakemake.cli import main as smk_main

            cwd = os.getcwd()
            os.chdir(work)
            try:
                prof.runcall(lambda: _quiet(smk_main, smk[1:]))
            finally:
                os.chdir(cwd)
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(35)
            print(s.getvalue())
    return 0


def _quiet(fn, argv):
    try:
        fn(argv)
    except SystemExit:
        pass


if __name__ == "__main__":
    raise SystemExit(main())
