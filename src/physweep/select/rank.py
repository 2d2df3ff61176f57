"""Block winners, promotion to the full eval, and the round's final ranking.

Physics gates are hard filters everywhere: a run failing a gate (or diverged) is never promoted
and never wins. The round's objective orders the rest (lower is better).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from physweep.select.scores import objective_cost_label, objective_score, read_eval

#: eval-summary columns of ranking.csv: the run's errors next to the baselines on the same
#: samples (persistence, linear extrapolation, reference model), skill = 1 - nrmse/persistence
RANK_METRICS = ("nrmse", "nrmse_persistence", "nrmse_linear", "nrmse_reference", "skill",
                "nrmse_long", "nrmse_ood", "ece", "crps", "spread_skill", "s_per_step",
                "j_per_step")


def _eligible(decision: dict[str, Any], summary: dict[str, Any], is_replicate: bool) -> bool:
    return (decision.get("continue", False) and not is_replicate and summary["gates_pass"]
            and not summary["diverged"])


def _order(items: list[tuple[str, float]]) -> list[str]:
    finite = [(n, s) for n, s in items if math.isfinite(s)]
    return [n for n, _ in sorted(finite, key=lambda t: (t[1], t[0]))]


def block_winner(runs: dict[str, dict[str, Any]], objective: str) -> dict[str, Any]:
    """Best run of a block. ``runs[name] = {"eval": path, "decision": dict, "knobs": dict,
    "replicate": bool}``. Falls back to the best non-diverged run, then to the first run."""
    summaries = {n: read_eval(r["eval"]) for n, r in runs.items()}
    scores = {n: objective_score(summaries[n], objective) for n in runs}
    eligible = [(n, scores[n]) for n, r in runs.items()
                if _eligible(r["decision"], summaries[n], r.get("replicate", False))]
    order = _order(eligible)
    reason = "best eligible run (trained to the end, gates pass)"
    if not order:
        order = _order([(n, s) for n, s in scores.items() if not summaries[n]["diverged"]])
        reason = "no eligible run: best non-diverged run"
    best = order[0] if order else next(iter(runs))
    return {"best": {"run": best, "score": scores[best], "knobs": runs[best]["knobs"]},
            "objective": objective, "reason": reason,
            "scores": {n: (None if not math.isfinite(s) else s) for n, s in scores.items()}}


def promote(runs: dict[str, dict[str, Any]], objective: str, k: int) -> dict[str, Any]:
    """Top-k eligible runs by small-eval objective go to the full eval."""
    summaries = {n: read_eval(r["eval"]) for n, r in runs.items()}
    scores = [(n, objective_score(summaries[n], objective)) for n, r in runs.items()
              if _eligible(r["decision"], summaries[n], r.get("replicate", False))]
    promoted = _order(scores)[:k]
    return {"objective": objective, "k": k, "promoted": promoted,
            "eligible": [n for n, _ in scores]}


#: full-eval columns of ranking.csv (promoted runs only; NaN for the others), prefixed "full_"
FULL_METRICS = ("nrmse", "nrmse_persistence", "nrmse_reference", "skill", "nrmse_long",
                "nrmse_ood", "ece", "crps")


def rank(runs: dict[str, dict[str, Any]], full_evals: dict[str, Path], objective: str,
         round_name: str, swept: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Final ranking table and winners, on one comparable quantity.

    Every run is ranked by its small-eval objective (``score``; every run has a small eval, on
    the same samples): runs trained to the end first, then early-stopped runs (their probe-point
    results are kept, marked, but cannot win); gate failures (small eval) and divergences are
    unranked. Promoted runs also carry their full-eval results in ``full_*`` columns and a
    ``full_rank`` among the promoted: as the playbook says, the small eval decides promotion
    and the full eval decides the winner among the promoted (a promoted run that fails a gate
    in the full eval cannot win). ``runs[name]`` as in block_winner plus "block", "seed",
    "train_steps", "compute_fraction"."""
    rows, small = [], {}
    for name, r in runs.items():
        summary = small[name] = read_eval(r["eval"])
        full = read_eval(full_evals[name]) if name in full_evals else None
        decision = r["decision"]["decision"]
        status = {"stop": "early_stopped", "diverged": "diverged"}.get(decision, "ok")
        if summary["diverged"] or (full is not None and full["diverged"]):
            status = "diverged"
        row = {
            "run": name, "block": r["block"], "seed": r["seed"], "status": status,
            "promoted": full is not None, "winner": False, "rank": pd.NA, "objective": objective,
            "score": objective_score(summary, objective),
            **{f"knob.{k}": r["knobs"].get(k) for k in swept},
            **{m: summary.get(m, math.nan) for m in RANK_METRICS},
            "gates_pass": summary["gates_pass"],
            **{k: v for k, v in summary.items() if k.startswith("gate.")},
            "full_rank": pd.NA,
            "full_score": objective_score(full, objective) if full else math.nan,
            **{f"full_{m}": (full or {}).get(m, math.nan) for m in FULL_METRICS},
            "full_gates_pass": full["gates_pass"] if full else pd.NA,
            "train_steps": r.get("train_steps", pd.NA),
            "compute_fraction": r.get("compute_fraction", math.nan),
        }
        rows.append(row)
    df = pd.DataFrame(rows)
    rankable = df[(df["status"] != "diverged") & df["gates_pass"] & df["score"].map(math.isfinite)]
    order = sorted(rankable.index, key=lambda i: (df.at[i, "status"] == "early_stopped",
                                                   df.at[i, "score"], df.at[i, "run"]))
    for pos, i in enumerate(order, start=1):
        df.at[i, "rank"] = pos
    df["rank"] = df["rank"].astype("Int64")
    finalists = sorted((i for i in df.index if df.at[i, "promoted"]
                        and df.at[i, "status"] == "ok" and df.at[i, "full_gates_pass"] is True
                        and math.isfinite(df.at[i, "full_score"])),
                       key=lambda i: (df.at[i, "full_score"], df.at[i, "run"]))
    for pos, i in enumerate(finalists, start=1):
        df.at[i, "full_rank"] = pos
    df["full_rank"] = df["full_rank"].astype("Int64")
    complete = [i for i in order if df.at[i, "status"] == "ok"]
    if finalists:
        best = df.at[finalists[0], "run"]
        reason = "best promoted run by full-eval objective (promotion by small-eval objective)"
    elif complete:
        best = df.at[complete[0], "run"]
        reason = ("no promoted run passed the gates in the full eval: best gate-passing run "
                  "trained to the end (small eval)")
    else:
        best = next((n for n, r in runs.items() if r.get("is_baseline")), df.at[0, "run"])
        reason = "no run trained to the end passed the physics gates: the baseline is carried forward"
    df.loc[df["run"] == best, "winner"] = True
    df = df.sort_values(["rank", "run"], na_position="last").reset_index(drop=True)
    cost_label = objective_cost_label(list(small.values()))
    winners = {
        "round": round_name, "objective": objective, "winners": [best], "reason": reason,
        "best": {"run": best, "knobs": runs[best]["knobs"]},
        "fixed_for_next": runs[best]["knobs"],
        "cost_unit": cost_label if objective == "nrmse_per_joule" else None,
    }
    return df, winners


def run_records(names: list[str], evals: list[str], decisions: list[str], logs: list[str],
                meta: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Assemble rank()'s per-run records from the round's files. Knob values are the resolved
    nominal values stored in each run's eval file (winners of earlier rounds included; the
    training log of a training shared by several runs holds the training spec, without the
    evaluation-time knobs); the training log gives the steps trained."""
    import json

    import xarray as xr

    out = {}
    for name, ev, dec, log in zip(names, evals, decisions, logs, strict=True):
        with xr.open_dataset(log) as ds:
            spec = json.loads(ds.attrs["run_spec"])
            steps = int(ds["step"].values[-1]) if ds.sizes.get("step", 0) else 0
            total = int(ds.attrs.get("steps_total", 0)) or 1
        with xr.open_dataset(ev) as ds:
            run_spec = json.loads(ds.attrs.get("run_spec") or "{}")
        if "nominal" in run_spec:
            spec = run_spec
        out[name] = {
            "eval": Path(ev), "decision": json.loads(Path(dec).read_text()),
            "knobs": spec["nominal"], "train_steps": steps, "compute_fraction": steps / total,
            **meta[name],
        }
    return out
