"""Evaluation suites: roll a checkpoint out on test / OOD trajectories and write the eval file.

File format (docs/architecture.md, "Evaluation"). Dims ``sample`` (one rollout: a trajectory of
a split from one start snapshot; coordinates ``split``, ``traj_index``, ``start``, ``regime``),
``lead`` (1 … horizon steps after the start snapshot), ``channel`` (u, v, p) and ``quantile``.
The samples (trajectories round-robin over regimes, seeded stratified start snapshots) are the
same for every checkpoint evaluated with the same suite on the same data
(:mod:`physweep.evaluate.baselines`). Variables: per sample and lead ``nrmse, vrmse, pearson``
and the baselines' ``nrmse_persistence`` (the start state repeated), ``nrmse_linear``
(``x_t0 + s (x_t0 - x_{t0-1})``) and ``nrmse_reference`` (copied from the reference model's eval
file on the same samples; NaN without one); per sample, lead and channel ``nrmse_channel``,
``nrmse_persistence_channel``, ``nrmse_linear_channel``; per sample ``correlation_time`` (steps
with Pearson > 0.8), ``gate_<name>`` and ``gate_<name>_pass``, ``ece, crps, spread_skill`` and
``calibration(sample, quantile)``. Metrics are computed on the ensemble mean (nrmse, vrmse,
pearson, gates) or the ensemble (ece, crps, spread_skill), on fluid cells.

Attributes (the scalar summary; ``physweep.select.scores.read_eval`` reads them back). ``SUMMARY_KEYS``, which
selection and ranking read: ``nrmse`` (mean over in-distribution samples and all leads),
``nrmse_long`` (leads >= ``long_horizon_from``), ``nrmse_ood`` (the "ood" split, NaN without
one), ``nrmse_persistence`` (in-distribution), ``ece, crps, spread_skill`` (in-distribution
means), ``s_per_step``, ``j_per_step`` (NaN = not measured), ``diverged`` and ``gates_pass``
(0/1). ``EXTRA_SUMMARY_KEYS``: ``nrmse_linear``, ``nrmse_reference`` (NaN without a reference),
``skill`` = 1 − nrmse / nrmse_persistence, ``skill_reference`` = 1 − nrmse / nrmse_reference,
each baseline's ``_long`` and ``_ood`` means, per channel ``nrmse_<c>``,
``nrmse_persistence_<c>``, ``nrmse_linear_<c>`` (c in u, v, p), ``n_samples`` (in-distribution).
Per regime of the in-distribution samples (label made identifier-safe; the labels in the attr
``regimes``): ``nrmse_regime_<r>``, ``nrmse_persistence_regime_<r>``,
``nrmse_linear_regime_<r>``, ``nrmse_reference_regime_<r>``, ``skill_regime_<r>``,
``n_samples_regime_<r>``.
A diverged checkpoint or a rollout that goes non-finite is recorded as failed (diverged = 1,
every gate failed, NaN model metrics; the baselines are still computed), never raised.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from physweep.evaluate import metrics
from physweep.evaluate.baselines import (
    Sample,
    eval_samples,
    linear_extrapolation,
    persistence,
    reference_nrmse,
)
from physweep.evaluate.rollout import rollout_ensemble
from physweep.evaluate.suite_config import EvalSuite  # noqa: F401  (re-exported)
from physweep.io import provenance, write_netcdf
from physweep.model.corrector import load_denoiser
from physweep.model.surrogate import load_checkpoint, load_model
from physweep.physics.flowsplit import CHANNELS
from physweep.train.loop import resolve_device

SUMMARY_KEYS = ("nrmse", "nrmse_long", "nrmse_ood", "nrmse_persistence", "ece", "crps",
                "spread_skill", "s_per_step", "j_per_step", "diverged", "gates_pass")
BASELINES = ("persistence", "linear", "reference")
EXTRA_SUMMARY_KEYS = (
    "nrmse_linear", "nrmse_reference", "skill", "skill_reference",
    *(f"nrmse_{b}_{part}" for b in BASELINES for part in ("long", "ood")),
    *(f"nrmse_{c}" for c in CHANNELS),
    *(f"nrmse_{b}_{c}" for b in ("persistence", "linear") for c in CHANNELS),
    "n_samples",
)
REGIME_INFIX = "_regime_"  # per-regime summary attrs: <metric>_regime_<label>
OOD_SPLIT = "ood"


def _gates(pred, mask, inflow, grid, truth, thresholds) -> tuple[dict, dict]:
    """Gate values and pass/fail; compute_gates records non-finite fields as failing values."""
    from physweep.physics.gates import check_gates, compute_gates, default_thresholds

    values = compute_gates(pred, mask, inflow, grid, truth=truth)
    return values, check_gates(values, thresholds or default_thresholds())


def evaluate_checkpoint(checkpoint: Path, data_dir: Path, suite: EvalSuite, out_path: Path,
                        device: str = "auto", threads: int = 1,
                        reference: Path | None = None,
                        run_spec: dict[str, Any] | None = None) -> dict[str, float]:
    """Evaluate one checkpoint on ``suite``; writes ``out_path`` and returns the summary.

    ``run_spec``: the evaluated run's spec when the checkpoint is a training shared by several
    runs (``physweep.plan.spec.training_spec``): its evaluation-only fields (corrector cadence,
    guidance, ensemble size: ``spec.EVALUATION_FIELDS``) replace the checkpoint's, and the file
    is labelled with that run. Without it the checkpoint's own spec and corrector are used.

    ``reference``: the eval file of the reference model on the same suite and data (its
    per-sample nRMSE becomes ``nrmse_reference``); ValueError when its samples differ."""
    from physweep.physics.dataset import load_split
    from physweep.physics.gates import grid_info
    from physweep.train.telemetry import EnergyMeter

    torch.set_num_threads(threads)
    dev = resolve_device(device)
    ckpt = load_checkpoint(checkpoint)
    ckpt_diverged = ckpt.get("status") == "diverged"
    model, spec = load_model(checkpoint, ckpt)
    denoiser, ccfg = load_denoiser(ckpt, model)
    if run_spec is not None:
        from physweep.plan.spec import evaluation_settings

        ccfg = dataclasses.replace(ccfg, **evaluation_settings(run_spec)["corrector"])
        spec = dict(run_spec, training=spec.get("run", ""))
    weight = float(ckpt["train_config"]["projection_weight"])
    members = suite.ensemble_members or ccfg.ensemble_members
    splits = {}
    for name in suite.splits:
        path = Path(data_dir) / f"{name}.nc"
        if path.exists():
            splits[name] = load_split(path)
    if not splits:
        raise FileNotFoundError(f"none of the splits {list(suite.splits)} under {data_dir}")
    # start >= 1 (the linear baseline needs the previous snapshot): at most n_time - 2 steps
    horizon = min(suite.horizon, *(s.n_time - 2 for s in splits.values()))
    if horizon < 1:
        raise ValueError(f"splits under {data_dir} have too few snapshots (need >= 3)")
    per_split = {name: eval_samples(name, split, suite.n_traj, suite.starts, horizon, suite.seed)
                 for name, split in splits.items()}
    samples: list[Sample] = [smp for ss in per_split.values() for smp in ss]
    ref = (reference_nrmse(reference, samples, np.arange(1, horizon + 1))  # fails before rollouts
           if reference is not None else None)
    gen = torch.Generator().manual_seed(suite.seed)
    meter = EnergyMeter(dev)
    e0 = meter.read_joules()
    rows: list[dict[str, Any]] = []
    seconds, steps, any_nonfinite = 0.0, 0, ckpt_diverged
    for name, split in splits.items():
        grid = grid_info(split)
        split_samples = per_split[name]
        split_rows: list[dict[str, Any]] = [{} for _ in split_samples]
        by_start: dict[int, list[int]] = {}
        for k, smp in enumerate(split_samples):
            by_start.setdefault(smp.start, []).append(k)
        for start, ks in sorted(by_start.items()):  # one rollout call per start snapshot
            trajs = [split_samples[k].traj_index for k in ks]
            truth = split.fields[trajs, start + 1 : start + 1 + horizon]  # (N, T, C, H, W)
            if ckpt_diverged:
                ens = torch.full((members, *truth.shape), math.nan)
            else:
                res = rollout_ensemble(model, denoiser, ccfg, split, trajs, start, horizon,
                                       suite.points, gen, members, weight, grid, dev)
                ens = res.fields  # (M, N, T, C, H, W)
                seconds += res.s_per_step * len(trajs) * horizon
                steps += len(trajs) * horizon
            finite = bool(torch.isfinite(ens).all())
            any_nonfinite |= not finite
            for j, k in enumerate(ks):
                split_rows[k] = _sample_row(split_samples[k], split, ens[:, j], truth[j], grid,
                                            horizon, finite, suite.thresholds)
        rows += split_rows
    e1 = meter.read_joules()
    j_per_step = (e1 - e0) / steps if (e0 is not None and e1 is not None and steps) else math.nan
    ds = _dataset(samples, rows, horizon)
    if ref is not None:
        ds["nrmse_reference"][:] = ref
    gate_pass = [v for v in ds.data_vars if v.startswith("gate_") and v.endswith("_pass")]
    all_pass = bool(gate_pass) and all(bool(ds[v].values.all()) for v in gate_pass)
    summ = {
        **_accuracy_summary(ds, suite.long_horizon_from),
        "s_per_step": seconds / steps if steps else math.nan,
        "j_per_step": float(j_per_step),
        "diverged": int(any_nonfinite),
        "gates_pass": int(all_pass and not any_nonfinite),
    }
    ds.attrs.update(summ)
    ds.attrs.update({"suite": suite.name, "checkpoint": str(checkpoint),
                     "checkpoint_status": str(ckpt.get("status")), "ensemble_members": members,
                     "horizon": horizon, "long_horizon_from": suite.long_horizon_from,
                     "starts": suite.starts, "seed": suite.seed,
                     "regimes": json.dumps(_regime_labels(ds)),
                     "reference": str(reference) if reference is not None else "",
                     "energy_source": meter.source, "run": str(spec.get("run", "")),
                     "run_spec": json.dumps(spec, sort_keys=True, default=str), **provenance()})
    write_netcdf(ds, out_path)
    return summ


def _sample_row(smp: Sample, split, ens: torch.Tensor, truth: torch.Tensor, grid, horizon: int,
                finite: bool, thresholds) -> dict[str, Any]:
    """Every per-sample metric of one rollout: ``ens`` (M, T, C, H, W), ``truth`` (T, C, H, W)."""
    i = smp.traj_index
    mask = split.mask[i]
    mean = ens.mean(dim=0)
    row: dict[str, Any] = {}
    row["nrmse_channel"] = metrics.nrmse_channels(mean, truth, mask).numpy()  # (T, C)
    row["vrmse"] = metrics.vrmse(mean, truth, mask).numpy()
    row["pearson"] = metrics.pearson(mean, truth, mask).numpy()
    row["correlation_time"] = int(metrics.correlation_time(torch.as_tensor(row["pearson"])))
    for name, forecast in (("persistence", persistence), ("linear", linear_extrapolation)):
        pred = forecast(split.fields[i], smp.start, horizon)
        row[f"nrmse_{name}_channel"] = metrics.nrmse_channels(pred, truth, mask).numpy()
    fluid = mask.expand_as(truth)
    e_i, t_i = ens[:, fluid], truth[fluid]  # (M, n_fluid), (n_fluid,)
    row["ece"] = metrics.quantile_ece(e_i, t_i)
    row["calibration"] = metrics.calibration_curve(e_i, t_i)
    row["crps"] = float(metrics.crps_ensemble(e_i, t_i).mean())
    row["spread_skill"] = metrics.spread_skill_ratio(e_i, t_i)
    values, passes = _gates(mean, mask, split.inflow[i], grid, truth, thresholds)
    if not finite:
        passes = dict.fromkeys(passes, False)
    row["gates"] = ({k: float(v) for k, v in values.items()},
                    {k: bool(v) for k, v in passes.items()})
    return row


def _mean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(x.mean()) if x.size else math.nan


def _safe(label: str) -> str:
    return re.sub(r"\W", "_", str(label))


def _regime_labels(ds: xr.Dataset) -> list[str]:
    """In-distribution regime labels in order of first appearance."""
    ind = ds["split"].values != OOD_SPLIT
    return list(dict.fromkeys(str(r) for r in ds["regime"].values[ind]))


def _accuracy_summary(ds: xr.Dataset, long_from: int) -> dict[str, float]:
    """Means over in-distribution samples (OOD: the "ood" split) of the model's and the
    baselines' errors, skills, per channel and per regime (the module docstring's keys)."""
    ood = ds["split"].values == OOD_SPLIT
    ind = ~ood
    long = ds["lead"].values >= long_from
    regime = np.asarray([str(r) for r in ds["regime"].values])
    out: dict[str, float] = {}
    for key in ("nrmse", *(f"nrmse_{b}" for b in BASELINES)):
        v = ds[key].values
        out[key] = _mean(v[ind])
        out[f"{key}_long"] = _mean(v[ind][:, long])
        out[f"{key}_ood"] = _mean(v[ood])
    out["ece"] = _mean(ds["ece"].values[ind])
    out["crps"] = _mean(ds["crps"].values[ind])
    out["spread_skill"] = _mean(ds["spread_skill"].values[ind])
    out["skill"] = metrics.skill(out["nrmse"], out["nrmse_persistence"])
    out["skill_reference"] = metrics.skill(out["nrmse"], out["nrmse_reference"])
    for key in ("nrmse", "nrmse_persistence", "nrmse_linear"):
        per_c = ds[f"{key}_channel"].values[ind]  # (S, T, C)
        for k, c in enumerate(ds["channel"].values):
            out[f"{key}_{c}"] = _mean(per_c[..., k])
    out["n_samples"] = int(ind.sum())
    for label in _regime_labels(ds):
        sel = ind & (regime == label)
        tag = REGIME_INFIX + _safe(label)
        for key in ("nrmse", *(f"nrmse_{b}" for b in BASELINES)):
            out[key + tag] = _mean(ds[key].values[sel])
        out["skill" + tag] = metrics.skill(out["nrmse" + tag], out["nrmse_persistence" + tag])
        out["n_samples" + tag] = int(sel.sum())
    return out


def _dataset(samples: list[Sample], rows: list[dict[str, Any]], horizon: int) -> xr.Dataset:
    levels = np.asarray(rows[0]["calibration"][0], dtype=np.float64)
    data: dict[str, Any] = {}
    for key in ("nrmse", "nrmse_persistence", "nrmse_linear"):
        per_c = np.stack([r[f"{key}_channel"] for r in rows]).astype(np.float64)  # (S, T, C)
        data[f"{key}_channel"] = (("sample", "lead", "channel"), per_c)
        data[key] = (("sample", "lead"), per_c.mean(axis=-1))
    data["nrmse_reference"] = (("sample", "lead"), np.full((len(rows), horizon), math.nan))
    for key in ("vrmse", "pearson"):
        data[key] = (("sample", "lead"), np.stack([r[key] for r in rows]).astype(np.float64))
    for key in ("ece", "crps", "spread_skill"):
        data[key] = ("sample", np.asarray([r[key] for r in rows], dtype=np.float64))
    data["correlation_time"] = ("sample", np.asarray([r["correlation_time"] for r in rows]))
    data["calibration"] = (("sample", "quantile"),
                           np.stack([np.asarray(r["calibration"][1], dtype=np.float64)
                                     for r in rows]))
    names = sorted({k for r in rows for part in r["gates"] for k in part})
    for g in names:
        data[f"gate_{g}"] = ("sample", np.asarray([r["gates"][0].get(g, math.nan)
                                                   for r in rows]))
        data[f"gate_{g}_pass"] = ("sample", np.asarray([int(r["gates"][1].get(g, False))
                                                        for r in rows], dtype=np.int8))
    coords = {"sample": np.arange(len(rows)), "lead": np.arange(1, horizon + 1),
              "channel": list(CHANNELS), "quantile": levels,
              "split": ("sample", [s.split for s in samples]),
              "traj_index": ("sample", np.asarray([s.traj_index for s in samples])),
              "start": ("sample", np.asarray([s.start for s in samples])),
              "regime": ("sample", [s.regime for s in samples])}
    return xr.Dataset(data, coords=coords)


def _is_summary_key(name: str) -> bool:
    return name in SUMMARY_KEYS or name in EXTRA_SUMMARY_KEYS or REGIME_INFIX in name
