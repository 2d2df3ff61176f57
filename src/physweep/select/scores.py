"""Objective scores from evaluation files (lower is better for every objective)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

OBJECTIVES = ("nrmse", "ece", "nrmse_per_joule", "long_horizon_ood")
GATE_PREFIX = "gate_"


def read_eval(path: str | Path) -> dict[str, Any]:
    """Summary of one evaluation file: scalar attrs + per-run gate values (worst trajectory)."""
    with xr.open_dataset(path) as ds:
        out: dict[str, Any] = {k: _num(v) for k, v in ds.attrs.items()}
        for name in ds.data_vars:
            if name.startswith(GATE_PREFIX) and not name.endswith("_pass"):
                gate = name[len(GATE_PREFIX):]
                vals = ds[name].values.astype(float)
                out[f"gate.{gate}"] = float(np.max(vals)) if np.all(np.isfinite(vals)) else math.inf
                passed = ds.get(f"{name}_pass")
                out[f"gate.{gate}.pass"] = bool(np.all(passed.values)) if passed is not None else False
    out["diverged"] = bool(out.get("diverged", 0))
    out["gates_pass"] = bool(out.get("gates_pass", 0)) and not out["diverged"]
    return out


def _num(v: Any) -> Any:
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    return v


def objective_score(summary: dict[str, Any], objective: str) -> float:
    """The round objective of one evaluation summary (NaN when it cannot be computed)."""
    if summary.get("diverged"):
        return math.inf
    if objective == "nrmse":
        return float(summary.get("nrmse", math.nan))
    if objective == "ece":
        return float(summary.get("ece", math.nan))
    if objective == "nrmse_per_joule":
        cost = summary.get("j_per_step", math.nan)
        if not _finite(cost):
            cost = summary.get("s_per_step", math.nan)
        return float(summary.get("nrmse", math.nan)) * float(cost)
    if objective == "long_horizon_ood":
        parts = [summary.get("nrmse_long", math.nan), summary.get("nrmse_ood", math.nan)]
        parts = [float(p) for p in parts if _finite(p)]
        return float(np.mean(parts)) if parts else math.nan
    raise ValueError(f"unknown objective {objective!r}; allowed: {OBJECTIVES}")


def objective_cost_label(summaries: list[dict[str, Any]]) -> str:
    """'J/step' when every run measured energy, else 's/step' (energy not measured)."""
    ok = summaries and all(_finite(s.get("j_per_step", math.nan)) for s in summaries)
    return "J/step" if ok else "s/step"


def per_trajectory_scores(path: str | Path, objective: str) -> np.ndarray:
    """Objective per evaluated trajectory (for bootstrap sigma when only one baseline seed)."""
    with xr.open_dataset(path) as ds:
        if objective == "ece" and "ece" in ds:
            return ds["ece"].values.astype(float)
        nrmse = ds["nrmse"].values.astype(float)  # (traj, lead)
        if objective == "long_horizon_ood":
            start = int(ds.attrs.get("long_horizon_from", 1)) - 1
            return np.nanmean(nrmse[:, start:], axis=1)
        per_traj = np.nanmean(nrmse, axis=1)
        if objective == "nrmse_per_joule":
            cost = ds.attrs.get("j_per_step", math.nan)
            if not _finite(cost):
                cost = ds.attrs.get("s_per_step", math.nan)
            return per_traj * float(cost)
        return per_traj


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False
