"""The playbook's early-stop rule: at probe_fraction of the budget, stop a run whose small-eval
improvement over the baseline is less than sigma_factor * sigma.

sigma is the standard deviation of the baseline replicates' probe scores (seeds) or, with a
single baseline seed, the bootstrap standard deviation of the baseline's mean score over its
evaluated trajectories. Unlike the median stopping rule (Vizier) or ASHA, the reference is the
baseline's own seed-to-seed noise.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from physweep.select.scores import objective_score, per_trajectory_scores, read_eval


def _sigma(scores: list[float], baseline_evals: list[Path], objective: str,
           bootstrap_samples: int, seed: int = 0) -> tuple[float, float, str]:
    finite = [s for s in scores if math.isfinite(s)]
    if len(finite) >= 2:
        return float(np.mean(finite)), float(np.std(finite, ddof=1)), "seeds"
    if len(finite) == 1:
        idx = scores.index(finite[0])
        per_traj = per_trajectory_scores(baseline_evals[idx], objective)
        per_traj = per_traj[np.isfinite(per_traj)]
        rng = np.random.default_rng(seed)
        boot = rng.choice(per_traj, size=(bootstrap_samples, len(per_traj)), replace=True)
        return finite[0], float(np.std(boot.mean(axis=1), ddof=1)), "bootstrap"
    return math.nan, math.nan, "none"


def baseline_reference(baseline_evals: list[Path], objective: str,
                       bootstrap_samples: int = 1000) -> dict[str, Any]:
    """The round's early-stop reference, computed once from the baseline replicates' probe
    evals (``baseline_probe.json``): mean, sigma, how sigma was estimated, each replicate's
    score."""
    scores = [objective_score(read_eval(p), objective) for p in baseline_evals]  # read once
    mean, sigma, method = _sigma(scores, baseline_evals, objective, bootstrap_samples)
    return {"objective": objective, "mean": mean, "sigma": sigma, "sigma_method": method,
            "scores": {str(p): s for p, s in zip(baseline_evals, scores, strict=True)}}


def decide(run: str, is_baseline: bool, run_eval: Path, baseline: dict[str, Any],
           objective: str, sigma_factor: float, probe_fraction: float,
           enabled: bool = True) -> dict[str, Any]:
    """Continue or stop one run at the probe point; ``baseline`` is baseline_reference()'s.

    With ``enabled`` false (an exhaustive round) a run the rule would stop continues:
    ``decision`` is "continue", ``rule_decision`` keeps what the rule said (and ``reason`` says
    both), so the round's probe decisions can be replayed against its full-budget results."""
    if baseline["objective"] != objective:
        raise ValueError(f"baseline reference is for objective {baseline['objective']!r}, "
                         f"not {objective!r}")
    summary = read_eval(run_eval)
    score = objective_score(summary, objective)
    mean, sigma, method = float(baseline["mean"]), float(baseline["sigma"]), baseline["sigma_method"]
    out = {
        "run": run, "objective": objective, "run_score": score, "baseline_mean": mean,
        "sigma": sigma, "sigma_method": method, "sigma_factor": sigma_factor,
        "probe_fraction": probe_fraction, "improvement": mean - score,
    }
    if is_baseline:
        decision, reason = "baseline", "baseline replicate: always trained to the end"
    elif summary.get("diverged"):
        decision, reason = "diverged", "non-finite loss or rollout at the probe point"
    elif not math.isfinite(sigma):
        decision, reason = "continue", "baseline probe not usable: no basis to stop"
    elif mean - score < sigma_factor * sigma:
        decision = "stop"
        reason = (f"improvement {mean - score:.4g} < {sigma_factor:g} sigma = "
                  f"{sigma_factor * sigma:.4g}")
    else:
        decision = "continue"
        reason = f"improvement {mean - score:.4g} >= {sigma_factor:g} sigma = {sigma_factor * sigma:.4g}"
    out["rule_decision"] = decision
    out["early_stop_enabled"] = bool(enabled)
    if not enabled and decision == "stop":
        decision = "continue"
        reason = f"early stopping off (exhaustive round); the rule would stop: {reason}"
    out["decision"] = decision
    out["reason"] = reason
    out["continue"] = decision in ("continue", "baseline")
    out["saved_fraction"] = 0.0 if out["continue"] else 1.0 - probe_fraction
    return out
