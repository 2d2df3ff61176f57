"""What physweep's early-stop rule saves and what it costs, against Optuna's pruners.

1. ``--run``: train rounds exhaustively — every run to the end, early stopping off — at the
   configured preset (demo: CPU), into their own results directory:
       snakemake --cores N <rounds> --config results_dir=<dir> 'early_stop={enabled: false}'
   The probe-point small eval of every run is still made and the sigma rule's verdict recorded
   (decision.json ``rule_decision``).
2. Replay, per round, in the round's run order (physweep.select.replay): the sigma rule
   (the workflow's decide step), Optuna's MedianPruner / PercentilePruner /
   SuccessiveHalvingPruner fed the same probe small-eval score, the same pruners fed the
   training-loss curve (rollout term, 10-step means), and no stopping. Per policy: compute used
   (fraction of the exhaustive training budget, per training), the winner (best eligible run
   by the final small-eval objective among the runs trained to the end), its regret against
   the exhaustive best, Kendall's tau of the policy's ranking against the exhaustive one,
   whether the top-2 (the promoted set) is the exhaustive top-2, and the means over shuffled
   run orders (Optuna's pruners depend on the order trials finish in).

    python benchmarks/sweep_efficiency.py --run                 # train A and B, then replay
    python benchmarks/sweep_efficiency.py                       # replay an existing directory
    python benchmarks/sweep_efficiency.py --json out.json --markdown out.md
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from physweep.io import read_json  # noqa: E402
from physweep.select.replay import load_exhaustive_round, replay_round  # noqa: E402


def run_rounds(rounds: list[str], results: str, cores: int) -> float:
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), *rounds,
           "--config", f"results_dir={results}", "early_stop={enabled: false}"]
    print("$", " ".join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True)
    return time.time() - t0


def recorded_rule_stops(round_dir: Path) -> set[str] | None:
    """Runs the workflow's decide step said the sigma rule would stop (None: not recorded)."""
    out = set()
    for f in sorted((round_dir / "runs").glob("*/decision.json")):
        d = read_json(f)
        if "rule_decision" not in d:
            return None
        if d["rule_decision"] in ("stop", "diverged"):
            out.add(f.parent.name)
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %" if math.isfinite(x) else "-"


def _num(x: float, fmt: str = ".4f") -> str:
    return format(x, fmt) if math.isfinite(x) else "-"


def table(rows: list[dict], shuffled: bool) -> list[str]:
    head = ["policy", "fed", "compute", "saved", "stopped", "winner", "regret", "Kendall τ",
            "top-2 kept"]
    if shuffled:
        head += ["shuffled: compute", "regret", "P(regret 0)", "τ"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["policy"], r["feed"], _pct(r["compute"]), _pct(r["saved"]), str(r["stopped"]),
                 f"`{r['winner']}`" if r["winner"] else "none kept",
                 _num(r["regret"]) if r["winner"] else "-", _num(r["kendall_tau"], ".2f"),
                 "yes" if r["top_k_same"] else "no"]
        if shuffled:
            none = r.get("shuffled_no_winner", 0.0)
            cells += [_pct(r["shuffled_compute"]),
                      _num(r["shuffled_regret"]) + (f" (no winner in {_pct(none)})" if none else ""),
                      _pct(r["shuffled_zero_regret"]), _num(r["shuffled_tau"], ".2f")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def verdict(rows: list[dict]) -> list[str]:
    """The issue's goal (>= 50 % saved at zero regret) and the comparison at equal compute: an
    Optuna policy *dominates* the sigma rule when it uses no more compute for no more regret
    (one of the two strictly less)."""
    sigma = next(r for r in rows if r["policy"] == "sigma rule")
    out = [f"sigma rule: saves {_pct(sigma['saved'])} of the training compute at regret "
           f"{_num(sigma['regret'])} (goal: >= 50 % at regret 0: "
           f"{'met' if sigma['saved'] >= 0.5 and sigma['regret'] == 0 else 'not met'})"]
    others = [r for r in rows if r["policy"] not in ("sigma rule", "no stopping")
              and r["policy"].startswith(("Median", "Percentile", "SuccessiveHalving"))]
    dominating = [r for r in others if r["compute"] <= sigma["compute"] + 1e-9
                  and r["regret"] <= sigma["regret"]
                  and (r["compute"] < sigma["compute"] - 1e-9 or r["regret"] < sigma["regret"])]
    if dominating:
        best = min(dominating, key=lambda r: (r["regret"], r["compute"]))
        out.append(f"the sigma rule LOSES at equal compute: {best['policy']} fed {best['feed']} "
                   f"uses {_pct(best['compute'])} for regret {_num(best['regret'])} "
                   f"(top-2 kept: {'yes' if best['top_k_same'] else 'no'}; "
                   f"{len(dominating)} Optuna policies dominate it)")
    else:
        out.append("no Optuna policy reaches the sigma rule's regret with less compute: the "
                   "sigma rule is no worse at equal compute")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default="results/exhaustive",
                    help="results directory of the exhaustive rounds (relative to the repo)")
    ap.add_argument("--rounds", nargs="+", default=["round_a", "round_b"])
    ap.add_argument("--run", action="store_true", help="train the rounds exhaustively first")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--shuffles", type=int, default=50,
                    help="random run orders to average Optuna's order dependence over")
    ap.add_argument("--k", type=int, default=2, help="promotion k (top-k kept column)")
    ap.add_argument("--json", help="write every row here")
    ap.add_argument("--markdown", help="write the tables here")
    args = ap.parse_args(argv)

    wall = run_rounds(args.rounds, args.results, args.cores) if args.run else math.nan
    results = ROOT / args.results if not Path(args.results).is_absolute() else Path(args.results)
    report, md = {}, []
    for name in args.rounds:
        try:
            rnd = load_exhaustive_round(results / name)
        except ValueError as exc:
            print(f"sweep_efficiency: {exc}", file=sys.stderr)
            return 2
        rows = replay_round(rnd, k=args.k, shuffles=args.shuffles)
        sigma = next(r for r in rows if r["policy"] == "sigma rule")
        recorded = recorded_rule_stops(results / name)
        replayed = set(sigma["stopped_runs"])
        if recorded is not None and recorded != replayed:
            print(f"{name}: the replayed sigma rule stops {sorted(replayed)}, the workflow "
                  f"recorded {sorted(recorded)}", file=sys.stderr)
            return 1
        finals = sorted(r.final_score for r in rnd.runs if math.isfinite(r.final_score))
        base = [r.probe_score for r in rnd.runs if r.baseline]
        head = (f"## {name}: {len(rnd.runs)} runs on {len(rnd.trainings)} trainings, objective "
                f"{rnd.objective}, probe at {rnd.probe_fraction:g} of {rnd.total_steps} steps\n\n"
                f"final small-eval {rnd.objective}: best {finals[0]:.4f}, worst {finals[-1]:.4f}; "
                f"baseline probe scores {', '.join(f'{b:.4f}' for b in base)}"
                + ("; the replayed sigma rule stops exactly the runs the workflow recorded"
                   if recorded is not None else ""))
        lines = [head, "", *table(rows, args.shuffles > 0), "", *verdict(rows), ""]
        print("\n".join(lines), flush=True)
        md += lines
        report[name] = {"rows": rows, "runs": len(rnd.runs), "trainings": len(rnd.trainings),
                        "objective": rnd.objective}
    if math.isfinite(wall):
        print(f"exhaustive training of {' '.join(args.rounds)}: {wall / 60:.1f} min wall")
        report["wall_s"] = wall
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    if args.markdown:
        Path(args.markdown).write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
