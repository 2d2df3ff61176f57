"""Round-report build time and size: a synthetic 100-run round, and the demo round when
results/round_a exists (built into a temporary directory; results/ is never written).

    .venv/bin/python benchmarks/report_build.py [--runs 100] [--repeat 2] [--results results]

Prints one line per case: build time (best and median of ``--repeat`` builds), the size of the
self-contained report.html, and of everything the report rule writes (html + figures/ + tables/).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from physweep.report import build_round_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from synthetic_round import make_round  # noqa: E402  (the tests' synthetic-round fixture)

RERUN = "snakemake --cores 2 {round} --forcerun results/{round}/runs/{run}/probe/checkpoint.pt"


def demo_inputs(results: Path, round_name: str = "round_a") -> dict | None:
    """build_round_report's inputs for a finished round under ``results`` (None if absent)."""
    rd = results / round_name
    if not (rd / "ranking.csv").exists():
        return None
    runs = sorted(p.name for p in (rd / "runs").iterdir() if p.is_dir())
    promoted = []
    if (rd / "promoted.json").exists():
        promoted = json.loads((rd / "promoted.json").read_text()).get("promoted", [])

    def log(r):
        final = rd / "runs" / r / "final" / "train_log.nc"
        return final if final.exists() else rd / "runs" / r / "probe" / "train_log.nc"

    evals = {r: rd / "runs" / r / "small_eval.nc" for r in runs}
    evals.update({r: rd / "runs" / r / "full_eval.nc" for r in promoted})
    return dict(round_name=round_name, ranking_csv=rd / "ranking.csv",
                decisions={r: rd / "runs" / r / "decision.json" for r in runs},
                train_logs={r: log(r) for r in runs}, eval_files=evals,
                winners_yaml=rd / "winners.yaml", plan_json=rd / "plan.json",
                rerun_hint=RERUN)


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(
        p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench(name: str, inputs: dict, out: Path, repeat: int) -> dict:
    times = []
    for i in range(repeat):
        d = out / f"{name}_{i}"
        t0 = time.perf_counter()
        build_round_report(**inputs, out_html=d / "report.html", figures_dir=d / "figures",
                           tables_dir=d / "tables")
        times.append(time.perf_counter() - t0)
    d = out / f"{name}_0"
    res = {"case": name, "runs": len(inputs["decisions"]) or len(inputs["train_logs"]),
           "best_s": min(times), "median_s": statistics.median(times),
           "html_mb": _size(d / "report.html") / 1e6,
           "total_mb": sum(_size(d / p) for p in ("report.html", "figures", "tables")) / 1e6}
    print(f"{name:>14}: {res['runs']:4d} runs  build {res['best_s']:6.2f} s best, "
          f"{res['median_s']:6.2f} s median of {repeat}  report.html {res['html_mb']:6.2f} MB  "
          f"html+figures+tables {res['total_mb']:6.2f} MB", flush=True)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--results", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)
    out = []
    with tempfile.TemporaryDirectory(prefix="physweep-report-bench-") as tmp:
        tmp = Path(tmp)
        demo = demo_inputs(args.results)
        if demo is None:
            print(f"{'demo round_a':>14}: skipped (no {args.results}/round_a/ranking.csv)")
        else:
            out.append(bench("demo round_a", demo, tmp, args.repeat))
        t0 = time.perf_counter()
        syn = make_round(tmp / "synthetic", n_runs=args.runs)
        print(f"{'':>14}  (synthetic inputs written in {time.perf_counter() - t0:.1f} s)")
        out.append(bench(f"synthetic {args.runs}", syn, tmp, args.repeat))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
