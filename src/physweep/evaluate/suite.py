"""Evaluation suites: roll a checkpoint out on test / OOD trajectories and write the eval file.

File format (docs/architecture.md, "Evaluation"): dims ``traj`` (all evaluated trajectories of
all splits; coordinates ``split`` and ``traj_index`` say where each comes from), ``lead``
(1 … horizon steps after the start state, which is snapshot 0) and ``quantile``. Variables:
per traj and lead ``nrmse, vrmse, pearson, nrmse_persistence``; per traj ``correlation_time``
(steps with Pearson > 0.8), ``gate_<name>`` and ``gate_<name>_pass``, ``ece, crps,
spread_skill`` and ``calibration(traj, quantile)``. Metrics are computed on the ensemble mean
(nrmse, vrmse, pearson, gates) or the ensemble (ece, crps, spread_skill), on fluid cells.

Attributes (the scalar summary; ``summary(path)`` reads them back): ``nrmse`` (mean over
in-distribution trajectories and all leads), ``nrmse_long`` (leads >= ``long_horizon_from``),
``nrmse_ood`` (the "ood" split, NaN without one), ``nrmse_persistence`` (predicting the start
state at every lead, in-distribution), ``ece, crps, spread_skill`` (in-distribution means),
``s_per_step``, ``j_per_step`` (NaN = not measured), ``diverged`` and ``gates_pass`` (0/1).
A diverged checkpoint or a rollout that goes non-finite is recorded as failed (diverged = 1,
every gate failed, NaN metrics), never raised.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from physweep.evaluate import metrics
from physweep.evaluate.rollout import rollout_ensemble
from physweep.evaluate.suite_config import EvalSuite  # noqa: F401  (re-exported)
from physweep.io import provenance, write_netcdf
from physweep.model.corrector import load_denoiser
from physweep.model.surrogate import load_checkpoint, load_model
from physweep.train.loop import resolve_device

SUMMARY_KEYS = ("nrmse", "nrmse_long", "nrmse_ood", "nrmse_persistence", "ece", "crps",
                "spread_skill", "s_per_step", "j_per_step", "diverged", "gates_pass")
OOD_SPLIT = "ood"


def _gates(pred, mask, inflow, grid, truth, thresholds) -> tuple[dict, dict]:
    """Gate values and pass/fail; compute_gates records non-finite fields as failing values."""
    from physweep.physics.gates import check_gates, compute_gates, default_thresholds

    values = compute_gates(pred, mask, inflow, grid, truth=truth)
    return values, check_gates(values, thresholds or default_thresholds())


def evaluate_checkpoint(checkpoint: Path, data_dir: Path, suite: EvalSuite, out_path: Path,
                        device: str = "auto", threads: int = 1) -> dict[str, float]:
    """Evaluate one checkpoint on ``suite``; writes ``out_path`` and returns the summary."""
    from physweep.physics.dataset import load_split
    from physweep.physics.gates import grid_info
    from physweep.train.telemetry import EnergyMeter

    torch.set_num_threads(threads)
    dev = resolve_device(device)
    ckpt = load_checkpoint(checkpoint)
    ckpt_diverged = ckpt.get("status") == "diverged"
    model, spec = load_model(checkpoint, ckpt)
    denoiser, ccfg = load_denoiser(ckpt, model)
    weight = float(ckpt["train_config"]["projection_weight"])
    members = suite.ensemble_members or ccfg.ensemble_members
    splits = {}
    for name in suite.splits:
        path = Path(data_dir) / f"{name}.nc"
        if path.exists():
            splits[name] = load_split(path)
    if not splits:
        raise FileNotFoundError(f"none of the splits {list(suite.splits)} under {data_dir}")
    horizon = min(suite.horizon, *(s.n_time - 1 for s in splits.values()))
    gen = torch.Generator().manual_seed(suite.seed)
    meter = EnergyMeter(dev)
    e0 = meter.read_joules()
    rows: list[dict[str, Any]] = []
    seconds, steps, any_nonfinite = 0.0, 0, ckpt_diverged
    for name, split in splits.items():
        grid = grid_info(split)
        n = split.n_traj if suite.n_traj is None else min(suite.n_traj, split.n_traj)
        truth = split.fields[:n, 1 : 1 + horizon]  # (N, T, C, H, W)
        if ckpt_diverged:
            ens = torch.full((members, *truth.shape), math.nan)
        else:
            res = rollout_ensemble(model, denoiser, ccfg, split, list(range(n)), 0, horizon,
                                   suite.points, gen, members, weight, grid, dev)
            ens = res.fields
            seconds += res.s_per_step * n * horizon
            steps += n * horizon
        finite = bool(torch.isfinite(ens).all())
        any_nonfinite |= not finite
        mean = ens.mean(dim=0)  # (N, T, C, H, W)
        for i in range(n):
            mask = split.mask[i]
            row: dict[str, Any] = {"split": name, "traj_index": i}
            row["nrmse"] = metrics.nrmse(mean[i], truth[i], mask).numpy()
            row["vrmse"] = metrics.vrmse(mean[i], truth[i], mask).numpy()
            row["pearson"] = metrics.pearson(mean[i], truth[i], mask).numpy()
            row["correlation_time"] = int(metrics.correlation_time(torch.as_tensor(row["pearson"])))
            persist = split.fields[i, 0].expand_as(truth[i])
            row["nrmse_persistence"] = metrics.nrmse(persist, truth[i], mask).numpy()
            fluid = mask.expand_as(truth[i])
            e_i, t_i = ens[:, i][:, fluid], truth[i][fluid]  # (M, n_fluid), (n_fluid,)
            row["ece"] = metrics.quantile_ece(e_i, t_i)
            row["calibration"] = metrics.calibration_curve(e_i, t_i)
            row["crps"] = float(metrics.crps_ensemble(e_i, t_i).mean())
            row["spread_skill"] = metrics.spread_skill_ratio(e_i, t_i)
            values, passes = _gates(mean[i], mask, split.inflow[i], grid, truth[i],
                                    suite.thresholds)
            if not finite:
                passes = dict.fromkeys(passes, False)
            row["gates"] = ({k: float(v) for k, v in values.items()},
                            {k: bool(v) for k, v in passes.items()})
            rows.append(row)
    e1 = meter.read_joules()
    j_per_step = (e1 - e0) / steps if (e0 is not None and e1 is not None and steps) else math.nan
    ds = _dataset(rows, horizon)
    ood = ds["split"].values == OOD_SPLIT
    ind = ~ood
    long = ds["lead"].values >= suite.long_horizon_from
    gate_pass = [v for v in ds.data_vars if v.startswith("gate_") and v.endswith("_pass")]
    all_pass = bool(gate_pass) and all(bool(ds[v].values.all()) for v in gate_pass)
    summ = {
        "nrmse": _mean(ds["nrmse"].values[ind]),
        "nrmse_long": _mean(ds["nrmse"].values[ind][:, long]),
        "nrmse_ood": _mean(ds["nrmse"].values[ood]),
        "nrmse_persistence": _mean(ds["nrmse_persistence"].values[ind]),
        "ece": _mean(ds["ece"].values[ind]), "crps": _mean(ds["crps"].values[ind]),
        "spread_skill": _mean(ds["spread_skill"].values[ind]),
        "s_per_step": seconds / steps if steps else math.nan,
        "j_per_step": float(j_per_step),
        "diverged": int(any_nonfinite),
        "gates_pass": int(all_pass and not any_nonfinite),
    }
    ds.attrs.update(summ)
    ds.attrs.update({"suite": suite.name, "checkpoint": str(checkpoint),
                     "checkpoint_status": str(ckpt.get("status")), "ensemble_members": members,
                     "horizon": horizon, "long_horizon_from": suite.long_horizon_from,
                     "energy_source": meter.source, "run": str(spec.get("run", "")),
                     "run_spec": json.dumps(spec, sort_keys=True, default=str), **provenance()})
    write_netcdf(ds, out_path)
    return summ


def _mean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(x.mean()) if x.size else math.nan


def _dataset(rows: list[dict[str, Any]], horizon: int) -> xr.Dataset:
    levels = np.asarray(rows[0]["calibration"][0], dtype=np.float64)
    data: dict[str, Any] = {}
    for key in ("nrmse", "vrmse", "pearson", "nrmse_persistence"):
        data[key] = (("traj", "lead"), np.stack([r[key] for r in rows]).astype(np.float64))
    for key in ("ece", "crps", "spread_skill"):
        data[key] = ("traj", np.asarray([r[key] for r in rows], dtype=np.float64))
    data["correlation_time"] = ("traj", np.asarray([r["correlation_time"] for r in rows]))
    data["calibration"] = (("traj", "quantile"),
                           np.stack([np.asarray(r["calibration"][1], dtype=np.float64)
                                     for r in rows]))
    names = sorted({k for r in rows for part in r["gates"] for k in part})
    for g in names:
        data[f"gate_{g}"] = ("traj", np.asarray([r["gates"][0].get(g, math.nan) for r in rows]))
        data[f"gate_{g}_pass"] = ("traj", np.asarray([int(r["gates"][1].get(g, False))
                                                      for r in rows], dtype=np.int8))
    coords = {"traj": np.arange(len(rows)), "lead": np.arange(1, horizon + 1),
              "quantile": levels, "split": ("traj", [r["split"] for r in rows]),
              "traj_index": ("traj", np.asarray([r["traj_index"] for r in rows]))}
    return xr.Dataset(data, coords=coords)


def summary(path: Path) -> dict[str, float]:
    """The scalar summary (``SUMMARY_KEYS``) stored in an eval file's attributes."""
    with xr.open_dataset(path) as ds:
        return {k: (int(ds.attrs[k]) if k in ("diverged", "gates_pass") else float(ds.attrs[k]))
                for k in SUMMARY_KEYS}
