"""Self-contained HTML report of one sweep round (see docs/architecture.md for the inputs)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from physweep import __version__
from physweep.io import atomic_path, code_version, write_text
from physweep.plan.workflow import rerun_hint
from physweep.report import figures as F
from physweep.report.effects import EffectsResult, design_notes, estimate_effects, short_label
from physweep.report.html import (
    NOT_MEASURED,
    cell,
    esc,
    figure,
    fmt,
    is_missing,
    page,
    simple_table,
    table,
)

__all__ = ["DEFAULT_RERUN_HINT", "build_round_report", "load_ranking"]

DEFAULT_RERUN_HINT = rerun_hint()

METRICS = ["nrmse", "nrmse_persistence", "nrmse_reference", "skill", "nrmse_long", "nrmse_ood",
           "ece", "crps", "spread_skill", "s_per_step", "j_per_step"]
METRIC_LABELS = {"nrmse": "nRMSE", "nrmse_persistence": "persistence nRMSE",
                 "nrmse_reference": "reference nRMSE", "skill": "skill vs persistence",
                 "nrmse_long": "nRMSE long", "nrmse_ood": "nRMSE OOD",
                 "ece": "ECE", "crps": "CRPS", "spread_skill": "spread/skill",
                 "s_per_step": "s/step", "j_per_step": "J/step"}
#: ranking columns read but not shown in the table (drawn in the figures)
HIDDEN_METRICS = ["nrmse_linear"]
#: eval-file variables of the baselines (evaluate.suite): figure name -> variable
BASELINE_VARS = {"persistence": "nrmse_persistence", "linear": "nrmse_linear",
                 "reference": "nrmse_reference"}
SUITE_ORDER = {"small": 0, "full": 1}
SPLIT_ORDER = {"test": 0, "ood": 1}
BOOL_COLUMNS = ("promoted", "winner", "gates_pass", "full_gates_pass")
RANK_RULE = ("Rank and score: the small eval, which every run has on the same samples "
             "(early-stopped runs at their probe point, after the runs trained to the end). "
             "The top runs by small eval are promoted; the full eval decides the winner among "
             "them (full-eval rank).")
#: full-eval columns of the ranking (promoted runs): column -> label
FULL_COLUMNS = {"full_rank": "full-eval rank", "full_score": "full-eval score",
                "full_nrmse": "full-eval nRMSE", "full_skill": "full-eval skill",
                "full_gates_pass": "full-eval gates pass"}
DECISION_FIELDS = ("decision", "improvement", "sigma", "sigma_factor", "sigma_method",
                   "baseline_mean", "run_score", "probe_fraction", "saved_fraction")


# ----------------------------------------------------------------------------- reading inputs


def _to_bool(v: Any) -> bool | None:
    if is_missing(v):
        return None
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, int | float | np.integer | np.floating):
        return bool(v)
    s = str(v).strip().lower()
    if s in ("true", "yes", "1", "pass", "ok"):
        return True
    if s in ("false", "no", "0", "fail"):
        return False
    return None


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def load_ranking(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read the ranking CSV; bool columns become True/False/None, ``run`` a string."""
    df = pd.read_csv(path, dtype={"run": str})
    for col in df.columns:
        if col in BOOL_COLUMNS or (col.startswith("gate.") and col.endswith(".pass")):
            df[col] = pd.Series([_to_bool(v) for v in df[col]], index=df.index, dtype=object)
    numeric = [c for c in df.columns if c.startswith("full_") and c != "full_gates_pass"]
    for col in METRICS + HIDDEN_METRICS + numeric + ["score", "compute_fraction", "train_steps",
                                                     "rank"]:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    if "skill" not in df.columns and {"nrmse", "nrmse_persistence"} <= set(df.columns):
        df["skill"] = _skill(df["nrmse"].to_numpy(float), df["nrmse_persistence"].to_numpy(float))
    return df


def _skill(err, ref):
    """1 - err / ref (NaN where the reference error is not finite and positive), as
    ``evaluate.metrics.skill`` (not imported: it pulls in torch)."""
    err, ref = np.asarray(err, float), np.asarray(ref, float)
    ok = np.isfinite(ref) & (ref > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, 1.0 - err / np.where(ok, ref, 1.0), np.nan)


def _gate_names(df: pd.DataFrame) -> list[str]:
    names: list[str] = []
    for col in df.columns:
        if not col.startswith("gate."):
            continue
        name = col[5:-5] if col.endswith(".pass") else col[5:]
        if name not in names:
            names.append(name)
    return names


class _Inputs:
    """Everything read from disk, plus the problems met while reading (shown in the report)."""

    def __init__(self):
        self.problems: list[str] = []

    def json(self, path: Path | None, what: str) -> Any:
        try:
            return json.loads(Path(path).read_text())
        except (OSError, TypeError, ValueError) as exc:
            self.problems.append(f"{what}: cannot read {path}: {exc}")
            return None

    def yaml(self, path: Path | None, what: str) -> Any:
        try:
            return yaml.safe_load(Path(path).read_text())
        except (OSError, TypeError, yaml.YAMLError) as exc:
            self.problems.append(f"{what}: cannot read {path}: {exc}")
            return None

    def netcdf(self, path: Path, what: str):
        import xarray as xr

        try:
            with xr.open_dataset(path) as ds:
                return ds.load()
        except Exception as exc:  # noqa: BLE001 - a broken file must not stop the report
            self.problems.append(f"{what}: cannot read {path}: {type(exc).__name__}: {exc}")
            return None


# ----------------------------------------------------------------------------- figure data


def _values(ds, name: str) -> np.ndarray | None:
    if ds is None or name not in ds.variables:
        return None
    try:
        return np.asarray(ds[name].values, dtype=float)
    except (TypeError, ValueError):
        return None


def _steps(ds, n: int) -> np.ndarray:
    if "step" in ds.variables and ds["step"].size == n:
        try:
            return np.asarray(ds["step"].values, dtype=float)
        except (TypeError, ValueError):
            pass
    return np.arange(n, dtype=float)


def sharing_compute(fractions: Mapping[str, float], training_of: Mapping[str, str]
                    ) -> tuple[int, float, float]:
    """(distinct trainings, budget units spent, budget units the runs would have cost alone).

    ``fractions``: each run's compute fraction (steps its record's training ran / the budget);
    runs on one training (``training_of``, plan.json's ``training``) spent it once: the
    training's cost is its longest run's fraction (a stopped run on a training that continued
    for another run read the probe, the training went on)."""
    spent: dict[str, float] = {}
    alone = 0.0
    for run, frac in fractions.items():
        if not math.isfinite(frac):
            continue
        key = training_of.get(run, run)
        spent[key] = max(spent.get(key, 0.0), frac)
        alone += frac
    return len(spent), sum(spent.values()), alone


def _total_steps(run: str, log, row: Mapping[str, Any] | None) -> float:
    if log is not None:
        total = _num(log.attrs.get("steps_total"))
        if math.isfinite(total) and total > 0:
            return total
    if row is not None:
        steps, frac = _num(row.get("train_steps")), _num(row.get("compute_fraction"))
        if math.isfinite(steps) and math.isfinite(frac) and frac > 0:
            return steps / frac
    return math.nan


def _sample_dim(da) -> str | None:
    """The per-sample dim of an eval variable: ``sample`` (trajectory x start), or ``traj`` in
    eval files written before start phases existed."""
    return next((d for d in ("sample", "traj") if d in da.dims), None)


def _split_labels(ds, dim: str | None, n: int) -> np.ndarray:
    if dim is not None and "split" in ds.variables and ds["split"].dims == (dim,):
        return np.asarray([str(s) for s in ds["split"].values])
    return np.full(n, "test")


def _split_means(ds, var: str) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """Mean over samples of ``var`` (sample, lead) per split: ``{split: (lead, mean)}``."""
    if _values(ds, var) is None or "lead" not in ds[var].dims:
        return None
    da = ds[var].transpose(..., "lead")
    err = np.asarray(da.values, float).reshape(-1, da.sizes["lead"])
    lead = (np.asarray(ds["lead"].values, float) if "lead" in ds.coords
            else np.arange(1, da.sizes["lead"] + 1, dtype=float))
    splits = _split_labels(ds, _sample_dim(da), err.shape[0])
    return {str(sp): (lead, err[splits == sp].mean(axis=0)) for sp in np.unique(splits)
            if (splits == sp).any()}


def _lead_series(evals: Mapping[str, Any], var: str = "nrmse"):
    """Error vs lead per panel and run, and the baselines of each panel.

    A panel is a split ("test", "ood"), or "<suite> eval, <split>" when the round's record files
    come from several suites (promoted runs' full evals beside the others' small evals): the
    baselines are drawn on the samples they were measured on. Returns ``(series, baselines)``
    with ``series[panel][run] = (lead, error)`` and ``baselines[panel][name] = (lead, error)``
    (the first eval file of the panel that holds the baseline; the samples, hence the baseline
    values, are the same for every run evaluated with one suite)."""
    suites = {str(ds.attrs.get("suite", "")) for ds in evals.values()
              if ds is not None and _values(ds, var) is not None}
    multi = len(suites) > 1
    series: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    baselines: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    order: dict[str, tuple] = {}
    for run, ds in evals.items():
        curves = _split_means(ds, var) if ds is not None else None
        if not curves:
            continue
        suite = str(ds.attrs.get("suite", ""))
        base = {n: _split_means(ds, v) or {} for n, v in BASELINE_VARS.items()}
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


def _pareto_baselines(df: pd.DataFrame) -> list[tuple[str, str, float]]:
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


def _regime_section(evals: Mapping[str, Any], runs: list[str]) -> str:
    """Per-regime (and per-channel) accuracy of ``runs`` on their record eval files, next to the
    baselines on the same samples."""
    rows, missing, chan_names = [], [], []
    for run in runs:
        ds = evals.get(run)
        if ds is None or _values(ds, "nrmse") is None:
            missing.append(run)
            continue
        dim = _sample_dim(ds["nrmse"])
        if dim is None or "regime" not in ds.variables or ds["regime"].dims != (dim,):
            missing.append(run)
            continue
        suite = str(ds.attrs.get("suite", "—"))
        n = ds.sizes[dim]
        splits = _split_labels(ds, dim, n)
        regimes = np.asarray([str(r) for r in ds["regime"].values])

        def mean(var: str, sel: np.ndarray, ds=ds, dim=dim) -> float:
            v = _values(ds, var)
            if v is None:
                return math.nan
            v = np.asarray(ds[var].transpose(dim, ...).values, float)[sel]
            return float(v.mean()) if v.size else math.nan

        chans = ([str(c) for c in ds["channel"].values]
                 if "nrmse_channel" in ds.variables and "channel" in ds.variables else [])
        chan_names = chan_names or chans
        for split in sorted(dict.fromkeys(splits), key=lambda x: SPLIT_ORDER.get(x, 9)):
            in_split = splits == split
            for reg in [*dict.fromkeys(regimes[in_split]), "all regimes"]:
                sel = in_split & (regimes == reg) if reg != "all regimes" else in_split
                err = {name: mean(v, sel) for name, v in BASELINE_VARS.items()}
                model = mean("nrmse", sel)
                per_c = []
                for k, _c in enumerate(chans):
                    v = np.asarray(ds["nrmse_channel"].transpose(dim, ...).values, float)[sel]
                    per_c.append(float(v[..., k].mean()) if v.size else math.nan)
                rows.append([run, suite, split, reg, int(sel.sum()), model, err["persistence"],
                             err["linear"], err["reference"],
                             float(_skill(model, err["persistence"])), *per_c])
    if not rows:
        return ("<p>No per-regime results: " + (
            f"the eval files of {_runs_list(missing)} have no <code>regime</code> coordinate "
            "(written before per-sample evaluation)" if missing else "no run to show") + ".</p>")
    headers = ["run", "eval suite", "split", "regime", "samples", "nRMSE", "persistence",
               "linear extrapolation", "reference model", "skill vs persistence",
               *[f"nRMSE {c}" for c in chan_names]]
    rows = [r + [None] * (len(headers) - len(r)) for r in rows]
    note = (f'<p class="muted">Not shown (no regime coordinate in the eval file): '
            f"{_runs_list(missing)}.</p>" if missing else "")
    return simple_table(headers, rows) + note


# ----------------------------------------------------------------------------- HTML pieces


def _ranking_rows(df: pd.DataFrame, knobs: list[str], gates: list[str], extra: list[str],
                  decisions: Mapping[str, Any], show_objective: bool,
                  metrics: list[str] | None = None) -> tuple[list, list]:
    metrics = METRICS if metrics is None else metrics
    headers = ["rank", "run", "block", "seed", "status", "decision", "promoted", "winner"]
    headers += [k[5:] for k in knobs]
    headers += (["objective"] if show_objective else []) + ["score"]
    headers += [METRIC_LABELS[m] for m in metrics]
    headers += ["gates pass"] + [f"gate {g}" for g in gates]
    full_cols = [c for c in FULL_COLUMNS if c in df.columns]
    headers += [FULL_COLUMNS[c] for c in full_cols]
    headers += ["train steps", "compute %"] + extra
    rows = []
    for _, r in df.iterrows():
        run = str(r.get("run"))
        status = str(r.get("status", "")) if not is_missing(r.get("status")) else "unknown"
        dec = (decisions.get(run) or {}).get("decision")
        cls = [status]
        if r.get("winner") is True:
            cls.append("winner")
        if r.get("promoted") is True:
            cls.append("promoted")
        rank = _num(r.get("rank"))
        cells = [
            cell(rank if math.isfinite(rank) else None,
                 text=str(int(rank)) if math.isfinite(rank) else "unranked"),
            cell(run, text=("★ " if r.get("winner") is True else "")
                 + ("▲ " if r.get("promoted") is True else "") + run, sort_value=run,
                 cls="text"),
            cell(r.get("block", ""), text=fmt(r.get("block"), "—"), cls="text"),
            cell(r.get("seed"), text=fmt(r.get("seed"), "—")),
            cell(status, cls="text"),
            cell(dec or "", text=dec or "—", cls="text"),
            cell(r.get("promoted"), text=fmt(r.get("promoted"), "—")),
            cell(r.get("winner"), text=fmt(r.get("winner"), "—")),
        ]
        cells += [cell(r.get(k), text=fmt(r.get(k), "—")) for k in knobs]
        if show_objective:
            cells.append(cell(r.get("objective"), text=fmt(r.get("objective"), "—"), cls="text"))
        cells.append(cell(_num(r.get("score"))))
        cells += [cell(_num(r.get(m))) for m in metrics]
        gp = r.get("gates_pass")
        cells.append(cell(gp, text=fmt(gp), cls={True: "pass", False: "fail"}.get(gp, "nm")))
        for g in gates:
            val = _num(r.get(f"gate.{g}"))
            ok = r.get(f"gate.{g}.pass")
            if not math.isfinite(val) and ok is None:
                cells.append(cell(None))
                continue
            text = fmt(val, "") + (" ✓" if ok is True else " ✗ fail" if ok is False else "")
            cells.append(cell(val if math.isfinite(val) else None, text=text.strip(),
                              cls={True: "pass", False: "fail"}.get(ok, "")))
        for c in full_cols:  # promoted runs only
            v = r.get(c)
            if c == "full_gates_pass":
                cells.append(cell(v, text=fmt(v, "—"),
                                  cls={True: "pass", False: "fail"}.get(v, "nm")))
            else:
                v = _num(v)
                cells.append(cell(v if math.isfinite(v) else None,
                                  text=fmt(v) if math.isfinite(v) else "—"))
        steps = _num(r.get("train_steps"))
        cells.append(cell(steps, text=fmt(int(steps)) if math.isfinite(steps) else NOT_MEASURED))
        frac = _num(r.get("compute_fraction"))
        cells.append(cell(frac, text=f"{100 * frac:.0f}%" if math.isfinite(frac)
                          else NOT_MEASURED))
        cells += [cell(r.get(c)) for c in extra]
        rows.append(f'<tr class="{" ".join(cls)}">' + "".join(cells) + "</tr>")
    return headers, rows


def _li(items: list[str]) -> str:
    return "<ul class=\"summary\">" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _runs_list(runs: list[str]) -> str:
    return ", ".join(f"<code>{esc(r)}</code>" for r in runs) if runs else "none"


def _compact(d: Any) -> str:
    if not isinstance(d, Mapping) or not d:
        return "—"
    return ", ".join(f"{k}={v}" for k, v in d.items())


def _provenance(logs: Mapping[str, Any], evals: Mapping[str, Any], plan: Any,
                hw: list[str] | None = None, hw_source: str = "") -> str:
    keys = ("code_version", "physweep_version", "energy_source", "hostname")
    seen: dict[str, dict[str, int]] = {k: {} for k in keys}
    packages: dict[str, dict[str, int]] = {}
    for ds in list(logs.values()) + list(evals.values()):
        if ds is None:
            continue
        for k in keys:
            if k in ds.attrs:
                v = str(ds.attrs[k])
                seen[k][v] = seen[k].get(v, 0) + 1
        raw = ds.attrs.get("packages")
        if raw:
            try:
                pk = json.loads(raw) if isinstance(raw, str) else dict(raw)
            except (ValueError, TypeError):
                pk = {"packages": str(raw)}
            for name, ver in pk.items():
                packages.setdefault(name, {})
                packages[name][str(ver)] = packages[name].get(str(ver), 0) + 1
    rows = []
    if isinstance(plan, Mapping):
        rows.append(("preset", plan.get("preset", "—"), "plan"))
    for v in hw or []:
        rows.append(("hardware", v, hw_source))
    for k in keys:
        for v, n in seen[k].items():
            rows.append((k, v, f"{n} file(s)"))
    for name in sorted(packages):
        for v, n in packages[name].items():
            rows.append((f"package {name}", v, f"{n} file(s)"))
    rows.append(("report built by physweep", f"{__version__} ({code_version()})", "this page"))
    out = simple_table(["item", "value", "source"], rows)
    multi = [k for k in keys if len(seen[k]) > 1]
    multi += [f"package {n}" for n, vs in packages.items() if len(vs) > 1]
    if multi:
        out = (f'<p class="warn">Runs in this round were produced by different versions of: '
               f"{esc(', '.join(multi))}.</p>") + out
    return out


# ----------------------------------------------------------------------------- round facts



def _train_step_time(log) -> float:
    """Median training wall time per step of one run (s), NaN when not logged."""
    v = _values(log, "step_time_s")
    if v is None:
        return math.nan
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.median(v)) if v.size else math.nan


def _hardware(logs: Mapping[str, Any]) -> tuple[list[str], str]:
    """Hardware the runs trained on: the logs' ``hardware`` attribute when recorded, else this
    machine's description when every log was written on this host, else the host names."""
    recorded = sorted({str(ds.attrs["hardware"]) for ds in logs.values()
                       if ds is not None and "hardware" in ds.attrs})
    if recorded:
        return recorded, "train logs"
    hosts = {str(ds.attrs["hostname"]) for ds in logs.values()
             if ds is not None and ds.attrs.get("hostname")}
    import platform

    if hosts and hosts <= {platform.node()}:
        from physweep.train.telemetry import hardware_description

        devices = set()
        for ds in logs.values():
            try:
                devices.add(str(json.loads(ds.attrs["run_spec"])["train"].get("device", "auto")))
            except (KeyError, TypeError, ValueError, AttributeError):
                devices.add("auto")
        dev = "cpu" if devices == {"cpu"} else None
        try:
            return [hardware_description(dev)], (
                f"this host ({platform.node()}), where the runs were trained")
        except Exception:  # noqa: BLE001 - provenance is best effort
            return [], ""
    if hosts:
        return [f"not recorded; trained on host(s) {', '.join(sorted(hosts))}"], "train logs"
    return [], ""


def _hours_unit(hw: list[str]) -> str:
    text = " ".join(hw).lower()
    if any(w in text for w in ("nvidia", "gpu", "amd instinct", "radeon", "h100", "a100")):
        return "GPU-hours"
    return "CPU-hours" if hw else "device-hours"


def _round_hours(runs, logs, rows_by_run) -> float:
    """Training hours actually spent by the round (steps run x median step time)."""
    total = 0.0
    for r in runs:
        log = logs.get(r)
        steps = _values(log, "step_time_s")
        if steps is None:
            return math.nan
        total += float(np.nansum(steps[np.isfinite(steps)]))
    return total / 3600 if runs else math.nan


def _calibration(ds) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Mean calibration curve over the test trajectories of one eval file."""
    if ds is None or "calibration" not in ds.variables:
        return None
    da = ds["calibration"]
    if "quantile" not in da.dims:
        return None
    dim = _sample_dim(da)
    if dim is not None and "split" in ds.variables and ds["split"].dims == (dim,):
        test = np.asarray([str(v) == "test" for v in ds["split"].values])
        if test.any():
            da = da.isel({dim: np.flatnonzero(test)})
    obs = np.asarray(da.transpose(..., "quantile").values, float).reshape(-1, da.sizes["quantile"])
    with np.errstate(all="ignore"):
        obs = np.nanmean(obs, axis=0) if obs.size else obs
    lev = np.asarray(ds["quantile"].values, float)
    ece = _num(ds.attrs.get("ece"))
    return lev, obs, ece


def _effects_response(df: pd.DataFrame, dec: Mapping[str, Any], statuses) -> tuple[pd.Series, str]:
    """Per-run response for the effects fit: the objective at the probe point (decision.json
    ``run_score``, from probe_eval.nc) -- every run has it at the same training step, while
    the ranking's score compares early-stopped runs (probe checkpoint) with runs trained to the
    end. Falls back to the ranking score when a run has no decision. Diverged -> NaN."""
    vals, sources = [], set()
    for _, r in df.iterrows():
        run = str(r["run"])
        if statuses.get(run) == "diverged" or (dec.get(run) or {}).get("decision") == "diverged":
            vals.append(math.nan)
            continue
        v = _num((dec.get(run) or {}).get("run_score"))
        if math.isfinite(v):
            sources.add("probe")
        else:
            v = _num(r.get("score"))
            sources.add("ranking")
        vals.append(v if math.isfinite(v) else math.nan)
    src = ("probe" if sources == {"probe"} else "ranking" if sources == {"ranking"}
           else "mixed")
    return pd.Series(vals, index=df.index, dtype=float), src


def _effects_section(df, dec, objective, statuses, designs=None
                     ) -> tuple[EffectsResult | None, str, str]:
    knob_cols = [c for c in df.columns if c.startswith("knob.")]
    if not knob_cols:
        return None, "No swept knobs in the ranking: no effects to estimate.", \
            "<p>No swept knobs in the ranking (no <code>knob.*</code> columns).</p>"
    runs = df[knob_cols].rename(columns=lambda c: c[5:]).copy()
    runs["response"], src = _effects_response(df, dec, statuses)
    try:
        eff = estimate_effects(runs, list(runs.columns[:-1]), "response")
    except Exception as exc:  # noqa: BLE001 - the report must still be written
        return None, f"Effects could not be estimated: {esc(exc)}", \
            f'<p class="warn">Effects could not be estimated: {esc(type(exc).__name__)}: ' \
            f"{esc(exc)}</p>"
    src_txt = {
        "probe": "the objective at the probe point (each run's probe_eval, the score the "
                 "early-stopping decision used), so early-stopped runs and runs trained to the "
                 "end are compared at the same training step",
        "ranking": "the ranking's objective score (small or full eval; early-stopped runs are "
                   "scored at their probe checkpoint)",
        "mixed": "the probe-point objective where a decision exists, else the ranking score",
    }[src]
    explain = (f"Response: {esc(objective)} — {src_txt}; lower is better. Diverged runs are "
               f"left out. {eff.n_runs} runs used, knobs as categorical factors, OLS with "
               "nested-model F tests (statsmodels anova_lm); residual degrees of freedom: "
               f"{eff.residual_df}.")
    caption = ("Main effects: model-adjusted mean of the response per level of each swept knob "
               "(filled, line: overall mean + least-squares effect, so levels that happened to "
               "run with good values of other knobs get no credit for them) and the raw mean "
               "over the runs at that level (hollow, n = runs); p from the F test of the knob "
               "in the additive model. " + explain)
    rows = []
    for _, a in eff.anova.iterrows():
        label = (short_label(eff.labels.get(tuple(a["knobs"]), "—")) if a["kind"] == "interaction"
                 else "—")
        rows.append([a["term"].replace(":", " × "), a["kind"], label, int(a["df"]),
                     a["sum_sq"], a["F"], a["p_value"]])
    anova_html = simple_table(["term", "kind", "playbook note", "df", "sum of squares", "F",
                               "p"], rows) if rows else "<p>Nothing could be tested.</p>"
    main_rows = [[m["knob"], fmt(m["level"]), int(m["n"]), m["mean"], m["adjusted"],
                  m["effect"]] for _, m in eff.main.iterrows()]
    main_html = simple_table(["knob", "level", "runs", "raw mean", "adjusted mean (model)",
                              "effect (vs mean of levels)"], main_rows) if main_rows else ""
    notes = design_notes(designs) + (eff.notes or ["Every requested effect was estimable."])
    fixed = ", ".join(f"{k} = {fmt(v)}" for k, v in eff.fixed.items())
    html = (f"<p>{explain}</p>"
            + (f"<p class=\"muted\">Swept but constant among the runs used: {esc(fixed)}.</p>"
               if fixed else "")
            + "<h3>What the design cannot separate</h3><div class=\"warn\">"
            + _li([esc(n) for n in notes]) + "</div>"
            + "<h3>Significance (F tests)</h3>" + anova_html
            + "<h3>Level means</h3>" + main_html)
    return eff, caption, html


def _main_panels(eff: EffectsResult | None) -> dict[str, dict[str, Any]]:
    if eff is None:
        return {}
    out = {}
    for knob, g in eff.main.groupby("knob", sort=False):
        out[str(knob)] = {"levels": list(g["level"]), "ls_mean": list(g["adjusted"]),
                          "mean": list(g["mean"]), "n": list(g["n"]),
                          "p": eff.p_value(str(knob))}
    return out


def _inter_panels(eff: EffectsResult | None) -> list[dict[str, Any]]:
    if eff is None:
        return []
    out = []
    for (a, b), cells in eff.interactions.items():
        p = eff.p_value(f"{a}:{b}")
        label = eff.labels.get((a, b))
        title = (short_label(label) + " — " if label else "") + f"{a} × {b}"
        title += f" (p = {p:.2g})" if math.isfinite(p) else " (p not testable)"
        out.append({"a": a, "b": b, "title": title, "cells": cells})
    return out


def _fixed_text(fixed: Any, df: pd.DataFrame) -> str:
    """Knobs the next round fixes: the ones swept here first, the unchanged rest folded."""
    if not isinstance(fixed, Mapping) or not fixed:
        return "nothing"
    swept = {c[5:] for c in df.columns if c.startswith("knob.")}
    head = [k for k in fixed if k in swept]
    rest = [k for k in fixed if k not in swept]

    def codes(keys):
        return ", ".join(f"<code>{esc(k)} = {esc(fixed[k])}</code>" for k in keys)

    if not head or not rest:
        return codes(head or rest)
    return (codes(head) + f" (swept in this round) <details><summary>and {len(rest)} knobs not "
            "swept here</summary>" + codes(rest) + "</details>")


def _per_run_provenance(runs, logs, evals, statuses, cmds, swept=()) -> str:
    rows = []
    for r in runs:
        log = logs.get(r)
        spec_raw = None
        # the eval's run_spec first: a shared training's log holds the training spec, the
        # run's eval the run's own (its evaluation-time knobs included)
        for ds in (evals.get(r), log):
            if ds is not None and "run_spec" in ds.attrs:
                spec_raw = ds.attrs["run_spec"]
                break
        try:
            spec = json.loads(spec_raw) if spec_raw else None
        except (TypeError, ValueError):
            spec = None
        code = str(log.attrs.get("code_version", "—")) if log is not None else "—"
        nominal = spec.get("nominal") if isinstance(spec, Mapping) else None
        shown = ({k: nominal.get(k) for k in swept if k in nominal}
                 if isinstance(nominal, Mapping) and swept else {})
        cfg = (f"<details><summary>{esc(_compact(shown) if shown else 'run_spec')}</summary>"
               f"<pre>{esc(json.dumps(spec, indent=1, sort_keys=True))}</pre></details>"
               if isinstance(spec, Mapping) else '<span class="nm">not recorded</span>')
        rows.append(f'<tr><td class="text"><code>{esc(r)}</code></td>'
                    f'<td class="text">{esc(statuses.get(r, "—"))}</td>'
                    f'<td class="text">{esc(code)}</td>'
                    f'<td class="text wrap">{cfg}</td>'
                    f'<td class="text cmd"><code>{esc(cmds.get(r, "—"))}</code></td></tr>')
    return table(["run", "status", "code version", "resolved config (swept knobs; click for all)",
                  "rerun command"],
                 rows, table_id="runs")


# ----------------------------------------------------------------------------- main entry


def build_round_report(
    round_name: str,
    ranking_csv: Path,
    decisions: dict[str, Path],
    train_logs: dict[str, Path],
    eval_files: dict[str, Path],
    winners_yaml: Path,
    plan_json: Path,
    out_html: Path,
    figures_dir: Path | None = None,
    rerun_hint: str = DEFAULT_RERUN_HINT,
    tables_dir: Path | None = None,
) -> Path:
    """Write the round's HTML report (atomically) and return its path.

    ``rerun_hint`` is a ``str.format`` template with ``{round}``, ``{run}`` and ``{training}``
    (the run's training in plan.json: retraining a run retrains every run on it). With
    ``figures_dir`` every figure is also written there as PNG (names in
    :data:`physweep.report.figures.FIGURE_NAMES`; the set is fixed, missing data gives a figure
    with a note); with ``tables_dir`` (and ``figures_dir``) the ranking and the effects tables
    are also written there as standalone HTML pages (``ranking.html``, ``effects.html``) for
    Snakemake's report. Missing or unreadable inputs are listed in the report, never fatal -- except
    the ranking CSV, without which there is no report.
    """
    inp = _Inputs()
    df = load_ranking(ranking_csv)
    if "rank" in df.columns:
        df = df.sort_values("rank", na_position="last", kind="stable").reset_index(drop=True)
    rows_by_run = {str(r["run"]): r for _, r in df.iterrows()}
    runs = list(rows_by_run)
    n_runs = len(runs)

    dec = {r: inp.json(p, f"decision of {r}") for r, p in decisions.items()}
    dec = {r: d for r, d in dec.items() if isinstance(d, Mapping)}
    logs = {r: inp.netcdf(Path(p), f"train log of {r}") for r, p in train_logs.items()}
    evals = {r: inp.netcdf(Path(p), f"eval of {r}") for r, p in eval_files.items()}
    win = inp.yaml(winners_yaml, "winners") or {}
    plan = inp.json(plan_json, "plan") or {}
    if not isinstance(win, Mapping):
        inp.problems.append("winners: not a mapping")
        win = {}
    if not isinstance(plan, Mapping):
        inp.problems.append("plan: not a mapping")
        plan = {}

    def col(name: str) -> list:
        return list(df[name]) if name in df.columns else [None] * n_runs

    winners = [str(w) for w in (win.get("winners") or [])]
    if not winners:
        winners = [r for r, w in zip(runs, col("winner"), strict=True) if w is True]
    objective = win.get("objective")
    if objective is None or (isinstance(objective, str | float) and is_missing(objective)):
        objective = next((o for o in col("objective") if not is_missing(o)), "—")
    promoted = [r for r, p in zip(runs, col("promoted"), strict=True) if p is True]
    statuses = {r: (str(s) if not is_missing(s) else "unknown")
                for r, s in zip(runs, col("status"), strict=True)}
    diverged = sorted({r for r, s in statuses.items() if s == "diverged"}
                      | {r for r, d in dec.items() if d.get("decision") == "diverged"})
    failed = sorted(r for r, s in statuses.items() if s == "failed")
    stopped = [r for r in runs if statuses[r] == "early_stopped"
               or (dec.get(r) or {}).get("decision") == "stop"]
    gates = _gate_names(df)

    # ---- compute saved by early stopping
    saved_rows, saved_total, hours_total, hours_known = [], 0.0, 0.0, True
    for r in stopped:
        row = rows_by_run[r]
        frac = _num((dec.get(r) or {}).get("saved_fraction"))
        if not math.isfinite(frac):
            frac = 1.0 - _num(row.get("compute_fraction"))
        frac = frac if math.isfinite(frac) else math.nan
        total = _total_steps(r, logs.get(r), row)
        sps = _train_step_time(logs.get(r))
        hours = frac * total * sps / 3600 if all(map(math.isfinite, (frac, total, sps))) \
            else math.nan
        if math.isfinite(frac):
            saved_total += frac
        if math.isfinite(hours):
            hours_total += hours
        else:
            hours_known = False
        saved_rows.append((r, frac, hours))
    saved_pct = 100.0 * saved_total / n_runs if n_runs else math.nan
    used = [_num(c) for c in col("compute_fraction")]
    used_pct = 100.0 * np.nanmean(used) if any(math.isfinite(u) for u in used) else math.nan
    hw, hw_source = _hardware(logs)
    unit = _hours_unit(hw)
    round_hours = _round_hours(runs, logs, rows_by_run)

    # ---- gate failures
    gate_fail: dict[str, list[str]] = {}
    for r in runs:
        row = rows_by_run[r]
        bad = [g for g in gates if row.get(f"gate.{g}.pass") is False]
        if bad or row.get("gates_pass") is False:
            gate_fail[r] = bad or ["(overall)"]

    # ---- summary
    fixed = win.get("fixed_for_next") or {}
    summary = [
        f"<b>Objective:</b> {esc(objective)}"
        + (f" ({esc(plan['objective_description'])})" if plan.get("objective_description") else ""),
        f"<b>Winner(s):</b> {_runs_list(winners)}"
        + (f" — {esc(win.get('reason'))}" if win.get("reason") else ""),
        "<b>Fixed for the next round:</b> " + _fixed_text(fixed, df),
        f"<b>Runs:</b> {n_runs}; promoted to full eval: {_runs_list(promoted)}",
    ]
    if stopped:
        by_frac: dict[str, list[str]] = {}
        for r, f, _h in saved_rows:
            by_frac.setdefault(fmt(100 * f if math.isfinite(f) else f), []).append(r)
        detail = "; ".join(f"{_runs_list(rs)} saved {esc(pct)}% of its budget" if len(rs) == 1
                           else f"{len(rs)} runs saved {esc(pct)}% of their budget each"
                           for pct, rs in by_frac.items())
        hours_txt = (f", ≈ {hours_total:.3g} {esc(unit)} at each run's measured training "
                     "step time" if hours_known and saved_rows else "")
        summary.append(
            f"<b>Early-stopped:</b> {len(stopped)} run(s), saving {fmt(saved_pct)}% of the "
            f"round's training compute{hours_txt} ({detail})."
            + (f"<details><summary>runs</summary>{_runs_list(stopped)}</details>"
               if len(stopped) > 3 else ""))
    else:
        summary.append("<b>Early-stopped:</b> none")
    if math.isfinite(used_pct):
        summary.append(f"<b>Training compute used:</b> {used_pct:.0f}% of the round's full "
                       "budget (mean compute fraction over runs)"
                       + (f", ≈ {round_hours:.3g} {esc(unit)}" if math.isfinite(round_hours)
                          else ""))
    training_of = {str(r.get("run")): str(r["training"]) for r in (plan.get("runs") or [])
                   if isinstance(r, Mapping) and r.get("training")}
    if training_of:
        n_trainings, spent, alone = sharing_compute(
            dict(zip(runs, used, strict=True)), training_of)
        summary.append(
            f"<b>Shared trainings:</b> {n_runs} runs on {n_trainings} trainings (runs that "
            f"differ only in evaluation-time knobs share one); training compute spent "
            f"{spent:.3g} budget units, {alone - spent:.3g} saved by sharing "
            f"({alone:.3g} with one training per run)")
    summary.append(f"<b>Diverged:</b> {_runs_list(diverged)}")
    if failed:
        summary.append(f"<b>Failed:</b> {_runs_list(failed)}")
    by_gates: dict[tuple[str, ...], list[str]] = {}
    for r, g in gate_fail.items():
        by_gates.setdefault(tuple(g), []).append(r)
    summary.append("<b>Failing physics gates:</b> " + (
        "; ".join((f"<code>{esc(rs[0])}</code>" if len(rs) == 1 else
                   ("all " if len(rs) == n_runs else "") + f"{len(rs)} runs ("
                   + _runs_list(rs) + ")") + f": {esc(', '.join(g))}"
                  for g, rs in by_gates.items())
        if gate_fail else "none"))
    warnings = [str(w) for w in (plan.get("warnings") or [])]
    if warnings:
        summary.append(f"<b>Guardrail warnings:</b> {len(warnings)} (see below)")

    # ---- ranking table
    knobs = [c for c in df.columns if c.startswith("knob.")]
    known = {"run", "block", "seed", "status", "promoted", "winner", "rank", "objective",
             "score", "gates_pass", "train_steps", "compute_fraction", *FULL_COLUMNS, *METRICS,
             *HIDDEN_METRICS}
    extra = [c for c in df.columns if c not in known and not c.startswith(("knob.", "gate.", "full_"))]
    show_obj = "objective" in df.columns and df["objective"].nunique(dropna=True) > 1
    has_ref = "nrmse_reference" in df.columns and bool(
        np.isfinite(pd.to_numeric(df["nrmse_reference"], errors="coerce")).any())
    shown = [m for m in METRICS if m != "nrmse_reference" or has_ref]
    headers, trs = _ranking_rows(df, knobs, gates, extra, dec, show_obj, shown)
    ranking_html = table(headers, trs, sortable=True, table_id="ranking")

    # ---- figures
    highlight = winners
    curves, probe_steps, div_steps, relative, stage_steps = {}, [], {}, {}, set()
    baseline = [r for r, d in dec.items() if d.get("decision") == "baseline"]
    baseline += [r for r in runs if str(rows_by_run[r].get("block")) == "baseline"
                 and r not in baseline]
    for r, ds in logs.items():
        loss = _values(ds, "loss")
        if loss is None:
            continue
        loss = loss.reshape(-1)
        curves[r] = (_steps(ds, loss.size), loss)
        roll, pers = _values(ds, "loss_rollout"), _values(ds, "loss_persistence")
        if roll is not None and pers is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                relative[r] = (curves[r][0], roll.reshape(-1) / pers.reshape(-1))
        hz = _values(ds, "horizon")
        if hz is not None:  # steps where the curriculum's horizon changes
            hz = hz.reshape(-1)
            stage_steps.update(float(x) for x in curves[r][0][1:][np.diff(hz) != 0])
        if statuses.get(r) == "diverged" or str(ds.attrs.get("status")) == "diverged":
            div_steps[r] = _num(ds.attrs.get("diverged_step"))
    for r, d in dec.items():
        pf = _num(d.get("probe_fraction"))
        total = _total_steps(r, logs.get(r), rows_by_run.get(r))
        if math.isfinite(pf) and math.isfinite(total):
            probe_steps.append(round(pf * total))
    probe_txt = ", ".join(str(int(p)) for p in sorted(set(probe_steps))) or "not recorded"

    err = [_num(rows_by_run[r].get("nrmse")) for r in runs]
    jps = [_num(rows_by_run[r].get("j_per_step")) for r in runs]
    sps = [_num(rows_by_run[r].get("s_per_step")) for r in runs]
    with_err = [i for i, e in enumerate(err) if math.isfinite(e)]
    no_energy = [runs[i] for i in with_err if not math.isfinite(jps[i])]
    if with_err and not no_energy:
        cost, cost_label, pareto_note = jps, "energy per step (J/step, measured)", ""
    else:
        cost = sps
        cost_label = "time per step (s/step) — energy not measured"
        pareto_note = (f"energy missing for {len(no_energy)} of {len(with_err)} runs: "
                       "time per step used instead" if with_err else "")
    excluded = [r for r, e in zip(runs, err, strict=True) if not math.isfinite(e)]

    passed = np.full((n_runs, len(gates)), np.nan)
    gvals = np.full((n_runs, len(gates)), np.nan)
    for i, r in enumerate(runs):
        for j, g in enumerate(gates):
            ok = rows_by_run[r].get(f"gate.{g}.pass")
            passed[i, j] = {True: 1.0, False: 0.0}.get(ok, np.nan)
            gvals[i, j] = _num(rows_by_run[r].get(f"gate.{g}"))

    series, lead_baselines = _lead_series(evals)
    best_runs = list(dict.fromkeys(winners + promoted)) or runs[:1]
    regime_html = _regime_section(evals, best_runs)
    rel_runs = promoted or winners
    rel_note = "" if promoted else ("no promoted run: winner(s) shown" if winners else "")
    rel_curves = {r: c for r in rel_runs if (c := _calibration(evals.get(r))) is not None}
    eff, eff_caption, eff_html = _effects_section(df, dec, objective, statuses,
                                                  plan.get("designs"))
    resp_label = f"{objective} at the probe point (lower is better)"
    pngs = {
        "learning_curves": F.learning_curves_figure(
            curves, probe_steps=probe_steps, baseline_runs=baseline, highlight=highlight,
            diverged=div_steps, relative=relative, stage_steps=sorted(stage_steps)),
        "error_vs_lead": F.error_vs_lead_figure(series, highlight=highlight,
                                                baselines=lead_baselines),
        "pareto": F.pareto_figure(runs, cost, err, cost_label=cost_label, highlight=highlight,
                                  note=pareto_note, baselines=_pareto_baselines(df),
                                  error_label="nRMSE (small eval, in-distribution)"),
        "gate_matrix": F.gate_matrix_figure(runs, gates, passed, gvals),
        "reliability": F.reliability_figure(
            rel_curves, title="Reliability of the " + ("promoted runs (full eval)" if promoted
                                                       else "winner(s)"), note=rel_note),
        "main_effects": F.main_effects_figure(_main_panels(eff), response_label=resp_label),
        "interactions": F.interactions_figure(_inter_panels(eff), response_label=resp_label),
    }
    captions = {
        "learning_curves": (
            f"Left: training loss per run (all terms). Dotted vertical line: probe point (step "
            f"{esc(probe_txt)}), where the early-stopping decision was taken; thin blue lines: "
            "a new horizon stage of the curriculum starts (the rollout loss rises with the "
            "horizon). Grey band: mean ± σ over the baseline "
            f"runs ({_runs_list(baseline)}). Winners drawn thick. Right: the rollout loss as a "
            "fraction of what persistence (repeating the start state) scores on the same "
            "training batches; below 1 = the model predicts better than no change."),
        "error_vs_lead": (
            "nRMSE against lead time, mean over the evaluated samples (trajectory × start "
            "snapshot), per eval suite and split (test = in-distribution, ood = unseen "
            "geometries). Reference lines on the same samples: persistence (the start state "
            "repeated, dashed), linear extrapolation x<sub>t0</sub> + s·(x<sub>t0</sub> − "
            "x<sub>t0−1</sub>) (dotted; iterated it grows without bound, so it is clipped at the "
            "top of the runs' range), and the reference model (dash-dot) where its eval was "
            "given. Gaps are non-finite errors (diverged rollouts)."),
        "pareto": (
            f"Small-eval nRMSE of every run (one suite, the same samples for all; probe point "
            f"for early-stopped runs) against {esc(cost_label)}; the red staircase is the Pareto "
            "front (no other run is both cheaper and more accurate). ★ = winner. Horizontal "
            "lines: persistence, linear extrapolation and the reference model on the same "
            "samples. "
            + (f"Not shown (nRMSE not measured): {_runs_list(excluded)}." if excluded else "")),
        "gate_matrix": "Physics gates per run with the measured values; grey = not measured.",
        "reliability": (
            "Reliability diagram: fraction of the truth that falls below each predicted "
            "ensemble quantile, against the nominal level, mean over the evaluated test "
            "trajectories. On the dashed diagonal = calibrated; a curve flatter than the "
            "diagonal = over-confident (spread too narrow). Runs: "
            + _runs_list(list(rel_curves)) + "."),
        "main_effects": eff_caption,
        "interactions": (
            "Interaction plots for the knob pairs the design separates: mean response per "
            "level combination. Parallel lines = no interaction. Pairs the design cannot "
            "separate are listed under Effects instead of plotted."),
    }
    if figures_dir is not None:
        for key, png in pngs.items():
            with atomic_path(Path(figures_dir) / F.FIGURE_NAMES[key]) as tmp:
                tmp.write_bytes(png)
    fig_groups = {"Training and accuracy": ["learning_curves", "error_vs_lead", "pareto"],
                  "Physics gates and calibration": ["gate_matrix", "reliability"]}
    figs_html = "\n".join(
        f"<h3>{esc(title)}</h3>" + "\n".join(
            figure(pngs[k], captions[k], alt=k.replace("_", " ")) for k in keys)
        for title, keys in fig_groups.items())
    eff_figs = "\n".join(figure(pngs[k], captions[k], alt=k.replace("_", " "))
                         for k in ("main_effects", "interactions"))
    tables_html = {"ranking": page(f"physweep {round_name}: ranking", (
        f"<h1>Ranking of {esc(round_name)}</h1><p class=\"muted\">★ winner · ▲ promoted · "
        "click a column header to sort. " + RANK_RULE + "</p>" + ranking_html)),
        "effects": page(f"physweep {round_name}: effects",
                        f"<h1>Effects of the swept knobs: {esc(round_name)}</h1>" + eff_html),
        "regimes": page(f"physweep {round_name}: accuracy by regime",
                        f"<h1>Accuracy by regime: {esc(round_name)}</h1>" + regime_html)}
    if tables_dir is not None:
        for key, text in tables_html.items():
            write_text(Path(tables_dir) / f"{key}.html", text)

    # ---- decisions table
    dec_rows = [[r] + [d.get(f) for f in DECISION_FIELDS] for r, d in dec.items()]
    dec_html = (simple_table(["run", *DECISION_FIELDS], dec_rows) if dec_rows
                else "<p>No early-stopping decisions recorded.</p>")

    # ---- plan
    warn_html = (_li([esc(w) for w in warnings]) if warnings
                 else "<p>No guardrail warnings from the planner.</p>")
    plan_rows = []
    plan_specs = [sp for sp in plan.get("runs") or [] if isinstance(sp, Mapping)]
    nominals = [sp.get("nominal") or {} for sp in plan_specs]
    all_keys = list(dict.fromkeys(k for nm in nominals if isinstance(nm, Mapping) for k in nm))
    common = {k: nominals[0].get(k) for k in all_keys
              if all(isinstance(nm, Mapping) and nm.get(k) == nominals[0].get(k)
                     for nm in nominals)} if nominals and isinstance(nominals[0], Mapping) else {}
    for spec in plan_specs:
        if not isinstance(spec, Mapping):
            continue
        nominal = spec.get("nominal") or {}
        effective = spec.get("effective") or {}
        changed = ({k: v for k, v in effective.items() if nominal.get(k) != v}
                   if isinstance(effective, Mapping) else {})
        varied = ({k: v for k, v in nominal.items() if k not in common}
                  if isinstance(nominal, Mapping) else nominal)
        plan_rows.append([spec.get("run"), spec.get("block"), spec.get("seed"),
                          _compact(varied), _compact(changed), spec.get("lr_scaled"),
                          _compact(spec.get("fixed_from"))])
    plan_html = simple_table(["run", "block", "seed", "nominal (knobs that differ between runs)",
                              "effective (where different)", "lr scaled", "fixed from"],
                             plan_rows) if plan_rows else ""
    if plan_html and common:
        plan_html = (f"<details><summary>Nominal values common to all {len(plan_specs)} runs"
                     f"</summary><p>{esc(_compact(common))}</p></details>") + plan_html

    # ---- rerun
    example_run = winners[0] if winners else (runs[0] if runs else "RUN")
    trained = {str(sp.get("run")): str(sp["training"]) for sp in plan_specs if sp.get("training")}

    def _hint(run: str) -> str:
        return rerun_hint.format(round=round_name, run=run,
                                 training=trained.get(run, "<its training: runs/RUN/training.json>"
                                                      .replace("RUN", run)))

    try:
        example = _hint(example_run)
        cmds = {r: _hint(r) for r in runs}
    except (KeyError, IndexError, ValueError) as exc:
        inp.problems.append(f"rerun_hint template: {exc}")
        example, cmds = rerun_hint, {}
    runs_html = _per_run_provenance(runs, logs, evals, statuses, cmds,
                                    [c[5:] for c in df.columns if c.startswith("knob.")])

    problems_html = ""
    if inp.problems:
        problems_html = ("<h2>Input problems</h2><div class=\"warn\">"
                         + _li([esc(p) for p in inp.problems]) + "</div>")

    body = f"""
<h1>Round report: {esc(round_name)}</h1>
<p class="muted">preset {esc(plan.get("preset", "—"))} · {n_runs} runs ·
objective {esc(objective)}</p>
<h2>Summary</h2>
{_li(summary)}
<h2>Ranking</h2>
<p class="muted">★ winner · ▲ promoted to full eval · click a column header to sort. {esc(RANK_RULE)}
NaN values are shown as "{NOT_MEASURED}". Persistence and reference nRMSE are measured on the
same samples as the run's own nRMSE (its small eval); skill = 1 − nRMSE / persistence nRMSE
(0 = no better than repeating the start state, 1 = exact).</p>
{ranking_html}
<h2>Accuracy by regime</h2>
<p class="muted">The best run(s) (winner and promoted runs) on their record eval, per flow
regime: mean nRMSE over samples (trajectory × start snapshot) and lead times, next to the
baselines on the same samples.</p>
{regime_html}
<h2>Figures</h2>
{figs_html}
<h2>Effects of the swept knobs</h2>
{eff_html}
{eff_figs}
<h2>Early-stopping decisions</h2>
{dec_html}
<h2>Guardrail warnings</h2>
<div class="{"warn" if warnings else ""}">{warn_html}</div>
<h2>Plan</h2>
{plan_html or "<p>No plan entries.</p>"}
{problems_html}
<h2>Provenance</h2>
{_provenance(logs, evals, plan, hw, hw_source)}
<h2>Runs: resolved configuration and rerun command</h2>
<p>From the repository root, rerun one run (and exactly what depends on it), e.g.
<code>{esc(example_run)}</code>:</p>
<pre>{esc(example)}</pre>
{runs_html}
"""
    out_html = Path(out_html)
    write_text(out_html, page(f"physweep {round_name}", body))
    return out_html
