"""What the round report reads out of the runs' eval files (error vs lead, per regime,
calibration): plain arrays for the figures and tables."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from physweep.report.html import is_missing
from physweep.report.model import skill, values

#: eval-file variables of the baselines (evaluate.suite): figure name -> variable
BASELINE_VARS = {"persistence": "nrmse_persistence", "linear": "nrmse_linear",
                 "reference": "nrmse_reference"}
SUITE_ORDER = {"small": 0, "full": 1}
SPLIT_ORDER = {"test": 0, "ood": 1}
ALL_REGIMES = "all regimes"


def sample_dim(da) -> str | None:
    """The per-sample dim of an eval variable: ``sample`` (trajectory x start), or ``traj`` in
    eval files written before start phases existed."""
    return next((d for d in ("sample", "traj") if d in da.dims), None)


def split_labels(ds, dim: str | None, n: int) -> np.ndarray:
    if dim is not None and "split" in ds.variables and ds["split"].dims == (dim,):
        return np.asarray([str(s) for s in ds["split"].values])
    return np.full(n, "test")


def split_means(ds, var: str) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """Mean over samples of ``var`` (sample, lead) per split: ``{split: (lead, mean)}``."""
    if values(ds, var) is None or "lead" not in ds[var].dims:
        return None
    da = ds[var].transpose(..., "lead")
    err = np.asarray(da.values, float).reshape(-1, da.sizes["lead"])
    lead = (np.asarray(ds["lead"].values, float) if "lead" in ds.coords
            else np.arange(1, da.sizes["lead"] + 1, dtype=float))
    splits = split_labels(ds, sample_dim(da), err.shape[0])
    return {str(sp): (lead, err[splits == sp].mean(axis=0)) for sp in np.unique(splits)
            if (splits == sp).any()}


def lead_series(evals: Mapping[str, Any], var: str = "nrmse"):
    """Error vs lead per panel and run, and the baselines of each panel.

    A panel is a split ("test", "ood"), or "<suite> eval, <split>" when the round's record files
    come from several suites (promoted runs' full evals beside the others' small evals): the
    baselines are drawn on the samples they were measured on. Returns ``(series, baselines)``
    with ``series[panel][run] = (lead, error)`` and ``baselines[panel][name] = (lead, error)``
    (the first eval file of the panel that holds the baseline; the samples, hence the baseline
    values, are the same for every run evaluated with one suite)."""
    suites = {str(ds.attrs.get("suite", "")) for ds in evals.values()
              if ds is not None and values(ds, var) is not None}
    multi = len(suites) > 1
    series: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    baselines: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    order: dict[str, tuple] = {}
    for run, ds in evals.items():
        curves = split_means(ds, var) if ds is not None else None
        if not curves:
            continue
        suite = str(ds.attrs.get("suite", ""))
        base = {n: split_means(ds, v) or {} for n, v in BASELINE_VARS.items()}
        for split, curve in curves.items():
            key = f"{suite} eval, {split}" if multi and suite else split
            order[key] = (SUITE_ORDER.get(suite, 9), suite, SPLIT_ORDER.get(split, 9), split)
            series.setdefault(key, {})[run] = curve
            have = baselines.setdefault(key, {})
            for name, by_split in base.items():
                if name not in have and split in by_split and np.isfinite(by_split[split][1]).any():
                    have[name] = by_split[split]
    keys = sorted(series, key=lambda k: order[k])
    return {k: series[k] for k in keys}, {k: baselines.get(k, {}) for k in keys}


def pareto_baselines(df: pd.DataFrame) -> list[tuple[str, str, float]]:
    """Each eval suite's baseline nRMSE (the same for every run of that suite) from the ranking:
    ``(name, label suffix, value)`` for the Pareto figure's reference lines."""
    if "eval_suite" in df.columns:
        suites = sorted((s for s in dict.fromkeys(df["eval_suite"]) if not is_missing(s)),
                        key=lambda x: (SUITE_ORDER.get(str(x), 9), str(x)))
    else:
        suites = []
    out = []
    for suite in suites or [None]:
        rows = df if suite is None else df[df["eval_suite"] == suite]
        for name, col in BASELINE_VARS.items():
            if col not in rows.columns:
                continue
            vals = pd.to_numeric(rows[col], errors="coerce").to_numpy(float)
            vals = vals[np.isfinite(vals)]
            if vals.size:
                sfx = f" ({suite} eval)" if suite is not None and len(suites) > 1 else ""
                out.append((name, sfx, float(vals[0])))
    return out


def _regime_means(ds, dim: str, var: str, sel: np.ndarray) -> float:
    if values(ds, var) is None:
        return math.nan
    v = np.asarray(ds[var].transpose(dim, ...).values, float)[sel]
    return float(v.mean()) if v.size else math.nan


def regime_rows(run: str, ds) -> tuple[list[list[Any]], list[str]] | None:
    """Rows (run, suite, split, regime, samples, nRMSE, the three baselines, skill, per-channel
    nRMSE) of one record eval file, and its channel names; None without a regime coordinate."""
    if ds is None or values(ds, "nrmse") is None:
        return None
    dim = sample_dim(ds["nrmse"])
    if dim is None or "regime" not in ds.variables or ds["regime"].dims != (dim,):
        return None
    suite = str(ds.attrs.get("suite", "—"))
    splits = split_labels(ds, dim, ds.sizes[dim])
    regimes = np.asarray([str(r) for r in ds["regime"].values])
    chans = ([str(c) for c in ds["channel"].values]
             if "nrmse_channel" in ds.variables and "channel" in ds.variables else [])
    rows = []
    for split in sorted(dict.fromkeys(splits), key=lambda x: SPLIT_ORDER.get(x, 9)):
        in_split = splits == split
        for reg in [*dict.fromkeys(regimes[in_split]), ALL_REGIMES]:
            sel = in_split & (regimes == reg) if reg != ALL_REGIMES else in_split
            err = {name: _regime_means(ds, dim, v, sel) for name, v in BASELINE_VARS.items()}
            model = _regime_means(ds, dim, "nrmse", sel)
            per_c = []
            for k, _c in enumerate(chans):
                v = np.asarray(ds["nrmse_channel"].transpose(dim, ...).values, float)[sel]
                per_c.append(float(v[..., k].mean()) if v.size else math.nan)
            rows.append([run, suite, split, reg, int(sel.sum()), model, err["persistence"],
                         err["linear"], err["reference"],
                         float(skill(model, err["persistence"])), *per_c])
    return rows, chans


def calibration(ds) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Mean calibration curve over the test trajectories of one eval file."""
    if ds is None or "calibration" not in ds.variables:
        return None
    da = ds["calibration"]
    if "quantile" not in da.dims:
        return None
    dim = sample_dim(da)
    if dim is not None and "split" in ds.variables and ds["split"].dims == (dim,):
        test = np.asarray([str(v) == "test" for v in ds["split"].values])
        if test.any():
            da = da.isel({dim: np.flatnonzero(test)})
    obs = np.asarray(da.transpose(..., "quantile").values, float).reshape(-1, da.sizes["quantile"])
    with np.errstate(all="ignore"):
        obs = np.nanmean(obs, axis=0) if obs.size else obs
    lev = np.asarray(ds["quantile"].values, float)
    try:
        ece = float(ds.attrs.get("ece"))
    except (TypeError, ValueError):
        ece = math.nan
    return lev, obs, ece
