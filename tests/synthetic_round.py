"""A synthetic round on disk (ranking, decisions, train logs, evals, winners, plan) in the formats
of docs/architecture.md -- for report tests, the browser test and the report benchmark.

The objective has known main effects of lr and ema and a known lr x ema interaction (see
``make_round``), so the report's effects section has something real to find.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import yaml

__all__ = ["make_round"]

PACKAGES = json.dumps({"torch": "2.13.0", "numpy": "2.1.0"})
LR = [2e-4, 3e-4, 4.5e-4]
EMA = [0.999, 0.9995, 0.9999]
WARMUP = [0.03, 0.05, 0.06]
GATES = ("divergence", "mass_flux")


#: 2 test trajectories x 2 start snapshots, then 2 OOD samples (the eval files' sample coords)
SAMPLES = {"split": ("sample", ["test"] * 4 + ["ood"] * 2),
           "traj_index": ("sample", [0, 0, 1, 1, 0, 1]),
           "start": ("sample", [3, 11, 5, 14, 7, 7]),
           "regime": ("sample", ["periodic", "periodic", "irregular", "irregular", "periodic",
                                 "irregular"])}


def _baselines(suite: str, lead: np.ndarray) -> dict[str, np.ndarray]:
    """Baseline errors (sample, lead), the same for every run of a suite: persistence rising
    to a plateau, linear extrapolation blowing up, the reference model below both."""
    k = 1.0 if suite == "small" else 1.1
    ramp = np.array([1.0, 0.9, 1.1, 1.0, 0.95, 1.05])[:, None]
    pers = k * 0.9 * ramp * (1 - np.exp(-lead / 3.0))[None]
    return {"persistence": pers,
            "linear": k * ramp * (0.25 * lead[None] ** 1.5 / 2),
            "reference": 0.45 * pers}


def _spec(run: str, seed: int, lr: float, ema: float, warmup: float) -> dict[str, Any]:
    return {"run": run, "round": "round_s", "block": "optimizer", "preset": "demo", "seed": seed,
            "nominal": {"lr": lr, "ema": ema, "warmup": warmup, "model_dim": 384},
            "effective": {"lr": lr / 2, "model_dim": 48},
            "train": {"lr": lr / 2, "ema": ema, "warmup": warmup, "device": "cpu"},
            "model": {"model_dim": 48, "depth": 3}}


def make_round(root: Path, n_runs: int = 12, seed: int = 0, steps: int = 60) -> dict[str, Any]:
    """Write a synthetic round of ``n_runs`` runs under ``root``; return build_round_report's
    keyword arguments (without ``out_html``).

    Runs cycle through the 3x3x3 lr x ema x warmup grid. Objective (nrmse) =
    0.5 + 0.1*(lr index - 1) - 0.05*(ema index - 1) + 0.15 [lr=4.5e-4 and ema=0.9999] + noise.
    About one run in six is early-stopped, the run at index 5 diverges, the two best are promoted
    (full eval with a calibration curve), one promoted run fails a gate.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    combos = list(itertools.product(range(3), range(3), range(3)))
    rows, decisions, logs, evals, specs = [], {}, {}, {}, []
    for i in range(n_runs):
        li, ei, wi = combos[i % len(combos)]
        rep = i // len(combos)
        lr, ema, warmup = LR[li], EMA[ei], WARMUP[wi]
        run = f"lr~{lr:g}_ema~{ema:g}_warmup~{warmup:g}" + (f"_seed~{rep}" if rep else "")
        y = 0.5 + 0.1 * (li - 1) - 0.05 * (ei - 1) + (0.15 if (li, ei) == (2, 2) else 0.0)
        y += 0.01 * rng.normal()
        status = "diverged" if i == 5 else ("early_stopped" if i % 6 == 3 else "ok")
        rows.append({"run": run, "block": "optimizer", "seed": rep, "status": status,
                     "lr": lr, "ema": ema, "warmup": warmup, "y": y if status != "diverged"
                     else math.nan})
        specs.append(_spec(run, rep, lr, ema, warmup))
    df = pd.DataFrame(rows)
    ok = df[df.status == "ok"].sort_values("y")
    promoted = list(ok.run[:2])
    out = []
    rank_order = [r for r in df.sort_values("y").run if r in set(df.run[df.status != "diverged"])]
    gate_fail = promoted[1] if len(promoted) > 1 else None
    ranked = [r for r in rank_order if r != gate_fail]
    ranked = [r for r in promoted if r in ranked] + [r for r in ranked if r not in promoted]
    for k, r in df.iterrows():
        run, status = r.run, r.status
        div = status == "diverged"
        stopped = status in ("early_stopped", "diverged")
        fails = run == gate_fail
        d = root / "runs" / run
        d.mkdir(parents=True, exist_ok=True)
        n = steps * 35 // 100 if stopped else steps
        step = np.arange(1, n + 1)
        loss = (1.5 + r.y) * np.exp(-step / 25) + r.y * 0.2 + 0.01 * rng.random(n)
        if div:
            loss[n // 2:] = np.nan
        spec = specs[k]
        xr.Dataset(
            {"loss": ("step", loss), "step_time_s": ("step", np.full(n, 0.5 + 0.1 * rng.random())),
             "energy_j": ("step", np.full(n, np.nan))},
            coords={"step": step},
            attrs={"run": run, "status": "diverged" if div else "ok",
                   "diverged_step": n // 2 if div else -1, "steps_total": steps,
                   "energy_source": "none", "code_version": "abc123", "physweep_version": "0.1.0",
                   "packages": PACKAGES, "hostname": "synthetic-host",
                   "hardware": "1x NVIDIA H100 80GB HBM3", "run_spec": json.dumps(spec)},
        ).to_netcdf(d / "train_log.nc")
        logs[run] = d / "train_log.nc"
        q = np.round(np.arange(0.05, 0.96, 0.05), 2)
        spread = 0.6 + 0.2 * (k % 3)
        calib = 0.5 + (q - 0.5) * spread
        lead = np.arange(1, 9)
        err = (math.nan if div else r.y) * (1 + 0.1 * lead)[None] * (1 + 0.05 * rng.random((6, 8)))
        gate_vals = np.full(6, 0.5 if fails else 0.01)
        suite = "full" if run in promoted else "small"
        base = _baselines(suite, lead)
        per_c = err[..., None] * np.array([0.5, 1.2, 1.3])  # (sample, lead, channel)
        ds = xr.Dataset(
            {"nrmse": (("sample", "lead"), err),
             "nrmse_channel": (("sample", "lead", "channel"), per_c),
             **{f"nrmse_{b}": (("sample", "lead"), v) for b, v in base.items()},
             "calibration": (("sample", "quantile"), np.tile(calib, (6, 1))),
             **{f"gate_{g}": ("sample", gate_vals) for g in GATES},
             **{f"gate_{g}_pass": ("sample", (gate_vals < 0.1).astype("int8")) for g in GATES}},
            coords={"lead": lead, "quantile": q, "channel": ["u", "v", "p"], **SAMPLES},
            attrs={"nrmse": float(r.y), "ece": float(abs(spread - 1) / 4), "suite": suite,
                   **{f"nrmse_{b}": float(v[:4].mean()) for b, v in base.items()},
                   "code_version": "abc123", "packages": PACKAGES, "run_spec": json.dumps(spec)},
        )
        ds.to_netcdf(d / f"{suite}_eval.nc")
        evals[run] = d / f"{suite}_eval.nc"
        decision = ("diverged" if div else "stop" if stopped else "continue")
        (d / "decision.json").write_text(json.dumps({
            "run": run, "decision": decision, "continue": not stopped,
            "improvement": 0.01, "sigma": 0.01, "sigma_factor": 1.0, "sigma_method": "seeds",
            "baseline_mean": 0.5, "run_score": None if div else float(r.y),
            "probe_fraction": 0.35, "saved_fraction": 0.65 if stopped else 0.0}))
        decisions[run] = d / "decision.json"
        rank = ranked.index(run) + 1 if run in ranked else None
        out.append({
            "run": run, "block": "optimizer", "seed": r.seed, "status": status,
            "promoted": run in promoted, "winner": bool(ranked) and run == ranked[0],
            "rank": rank, "objective": "nrmse", "score": math.inf if div else r.y,
            "knob.lr": r.lr, "knob.ema": r.ema, "knob.warmup": r.warmup,
            "nrmse": r.y,
            **{f"nrmse_{b}": float(v[:4].mean()) for b, v in _baselines(suite, lead).items()},
            "skill": 1 - r.y / float(_baselines(suite, lead)["persistence"][:4].mean()),
            "nrmse_long": r.y * 1.5, "nrmse_ood": r.y * 2,
            "ece": math.nan if div else 0.05, "crps": math.nan if div else 0.1,
            "spread_skill": math.nan if div else 0.9, "s_per_step": 0.03, "j_per_step": math.nan,
            "gates_pass": not (div or fails),
            **{f"gate.{g}": (math.inf if div else float(gate_vals.max())) for g in GATES},
            **{f"gate.{g}.pass": not (div or fails) for g in GATES},
            "train_steps": n, "compute_fraction": n / steps,
            "full_score": r.y * 1.05 if run in promoted else math.nan,
            "full_nrmse": r.y * 1.05 if run in promoted else math.nan,
            "full_gates_pass": not (div or fails) if run in promoted else None,
        })
    ranking = pd.DataFrame(out).sort_values(["rank", "run"], na_position="last")
    ranking["rank"] = ranking["rank"].astype("Int64")
    csv = root / "ranking.csv"
    ranking.to_csv(csv, index=False)
    winner = ranked[0] if ranked else df.run[0]
    winners = root / "winners.yaml"
    winners.write_text(yaml.safe_dump({
        "round": "round_s", "objective": "nrmse", "winners": [winner],
        "reason": "best promoted run by full-eval objective",
        "fixed_for_next": {"lr": float(df.lr[df.run == winner].iloc[0]),
                           "ema": float(df.ema[df.run == winner].iloc[0])}}))
    plan = root / "plan.json"
    plan.write_text(json.dumps({"round": "round_s", "preset": "demo", "runs": specs,
                                "objective": "nrmse",
                                "objective_description": "lowest small/full-eval nRMSE, subject to "
                                                         "the physics gates",
                                "warnings": ["LR x EMA varied together: watch the train/val gap"]}))
    return dict(round_name="round_s", ranking_csv=csv, decisions=decisions, train_logs=logs,
                eval_files=evals, winners_yaml=winners, plan_json=plan)
