"""Self-contained HTML report of one sweep round (see docs/architecture.md for the inputs).

The round's results are read once into a :class:`~physweep.report.model.RoundResults`; each
section below turns it into the context of ``templates/round.html``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from physweep import __version__
from physweep.io import atomic_path, code_version, write_text
from physweep.plan.workflow import rerun_hint
from physweep.report import figures as F
from physweep.report.effects import EffectsResult, design_notes, estimate_effects, short_label
from physweep.report.evaldata import regime_rows
from physweep.report.html import NOT_MEASURED, environment, fmt, make_cell, render
from physweep.report.model import (
    FULL_COLUMNS,
    RoundResults,
    RunResult,
    full_column,
    load_ranking,
    load_round,
    num,
)
from physweep.report.round_figures import Figure, effect_figures, round_figures
from physweep.report.stopping import exhaustive, stopping_section, stopping_summary
from physweep.select.rank import RANK_METRICS

__all__ = ["DEFAULT_RERUN_HINT", "build_round_report", "load_ranking", "write_round_report"]

DEFAULT_RERUN_HINT = rerun_hint()

#: labels of the ranking's metrics (select.rank.RANK_METRICS)
METRIC_LABELS = {"nrmse": "nRMSE", "nrmse_persistence": "persistence nRMSE",
                 "nrmse_reference": "reference nRMSE", "skill": "skill vs persistence",
                 "nrmse_long": "nRMSE long", "nrmse_ood": "nRMSE OOD",
                 "ece": "ECE", "crps": "CRPS", "spread_skill": "spread/skill",
                 "s_per_step": "s/step", "j_per_step": "J/step"}
#: ranking metrics read but not shown in the table (drawn in the figures)
HIDDEN_METRICS = ["nrmse_linear"]
#: the metrics shown in the ranking table, in rank.py's order
METRICS = [m for m in RANK_METRICS if m not in HIDDEN_METRICS]
RANK_RULE = ("Rank and score: the small eval, which every run has on the same samples "
             "(early-stopped runs at their probe point, after the runs trained to the end). "
             "The top runs by small eval are promoted; the full eval decides the winner among "
             "them (full-eval rank).")
#: full-eval columns of the ranking (promoted runs): column -> label
FULL_LABELS = {full_column("rank"): "full-eval rank", full_column("score"): "full-eval score",
               full_column("nrmse"): "full-eval nRMSE", full_column("skill"): "full-eval skill",
               full_column("gates_pass"): "full-eval gates pass"}
DECISION_FIELDS = ("decision", "improvement", "sigma", "sigma_factor", "sigma_method",
                   "baseline_mean", "run_score", "probe_fraction", "saved_fraction")
KNOWN_COLUMNS = {"run", "block", "seed", "status", "promoted", "winner", "rank", "objective",
                 "score", "gates_pass", "train_steps", "compute_fraction", *FULL_COLUMNS,
                 *METRICS, *HIDDEN_METRICS}


def _macros():
    return environment().get_template("macros.html").module


# ----------------------------------------------------------------------------- summary


def _gate_failures(res: RoundResults) -> list[tuple[tuple[str, ...], list[str]]]:
    """Runs failing gates, grouped by the gates they fail."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for run in res.runs.values():
        bad = [g for g in res.gates if run.gates[g].passed is False]
        if bad or run.gates_pass is False:
            groups.setdefault(tuple(bad or ["(overall)"]), []).append(run.name)
    return list(groups.items())


def _summary(res: RoundResults) -> SimpleNamespace:
    runs = list(res.runs.values())
    stopped = [r for r in runs if r.early_stopped]
    fixed = res.winners_file.get("fixed_for_next") or {}
    fixed = dict(fixed) if isinstance(fixed, Mapping) else {}
    swept = set(res.knobs)
    saving = stopping_summary(res)  # compute, saved and shared: counted per training
    if not res.records_trainings:  # the plan does not record trainings: nothing to say
        saving["sharing"] = None
    return SimpleNamespace(
        objective=res.objective, objective_description=res.plan.get("objective_description"),
        winners=res.winners, reason=res.winners_file.get("reason"), fixed=fixed,
        fixed_head=[k for k in fixed if k in swept], fixed_rest=[k for k in fixed if k not in swept],
        n_runs=len(runs), promoted=res.promoted, stopped=[r.name for r in stopped],
        diverged=sorted(r.name for r in runs if r.diverged),
        failed=sorted(r.name for r in runs if r.status == "failed"),
        gate_failures=_gate_failures(res), n_warnings=len(_warnings(res)),
        rule_off=exhaustive(res), **saving)


def _warnings(res: RoundResults) -> list[str]:
    return [str(w) for w in (res.plan.get("warnings") or [])]


# ----------------------------------------------------------------------------- ranking table


def _ranking_columns(res: RoundResults) -> SimpleNamespace:
    df = res.ranking
    show_obj = "objective" in df.columns and df["objective"].nunique(dropna=True) > 1
    has_ref = "nrmse_reference" in df.columns and bool(
        np.isfinite(pd.to_numeric(df["nrmse_reference"], errors="coerce")).any())
    metrics = [m for m in METRICS if m != "nrmse_reference" or has_ref]
    full = [c for c in FULL_LABELS if c in df.columns]
    extra = [c for c in df.columns if c not in KNOWN_COLUMNS
             and not c.startswith(("knob.", "gate.", "full_"))]
    headers = ["rank", "run", "block", "seed", "status", "decision", "promoted", "winner",
               *res.knobs, *(["objective"] if show_obj else []), "score",
               *(METRIC_LABELS[m] for m in metrics), "gates pass",
               *(f"gate {g}" for g in res.gates), *(FULL_LABELS[c] for c in full),
               "train steps", "compute %", *extra]
    return SimpleNamespace(show_obj=show_obj, metrics=metrics, full=full, extra=extra,
                           headers=headers)


def _pass_cls(ok: Any, missing: str = "") -> str:
    return {True: "pass", False: "fail"}.get(ok, missing)


def _gate_cells(res: RoundResults, run: RunResult) -> list:
    cells = []
    for g in res.gates:
        val, ok = run.gates[g].value, run.gates[g].passed
        if not math.isfinite(val) and ok is None:
            cells.append(make_cell(None))
            continue
        text = fmt(val, "") + (" ✓" if ok is True else " ✗ fail" if ok is False else "")
        cells.append(make_cell(val if math.isfinite(val) else None, text=text.strip(),
                               cls=_pass_cls(ok)))
    return cells


def _full_cells(run: RunResult, full: list[str]) -> list:
    cells = []
    for c in full:  # promoted runs only
        v = run.get(c)
        if c == full_column("gates_pass"):
            cells.append(make_cell(v, text=fmt(v, "—"), cls=_pass_cls(v, "nm")))
        else:
            v = num(v)
            cells.append(make_cell(v if math.isfinite(v) else None,
                                   text=fmt(v) if math.isfinite(v) else "—"))
    return cells


def _ranking_row(res: RoundResults, run: RunResult, cols: SimpleNamespace) -> SimpleNamespace:
    dec, rank, name = run.decided, run.rank, run.name
    marks = ("★ " if run.winner else "") + ("▲ " if run.promoted else "")
    cells = [
        make_cell(rank if math.isfinite(rank) else None,
                  text=str(int(rank)) if math.isfinite(rank) else "unranked"),
        make_cell(name, text=marks + name, sort_value=name, cls="text"),
        make_cell(run.get("block", ""), text=fmt(run.get("block"), "—"), cls="text"),
        make_cell(run.get("seed"), text=fmt(run.get("seed"), "—")),
        make_cell(run.status, cls="text"),
        make_cell(dec or "", text=dec or "—", cls="text"),
        make_cell(run.get("promoted"), text=fmt(run.get("promoted"), "—")),
        make_cell(run.get("winner"), text=fmt(run.get("winner"), "—")),
        *(make_cell(run.get(f"knob.{k}"), text=fmt(run.get(f"knob.{k}"), "—"))
          for k in res.knobs)]
    if cols.show_obj:
        cells.append(make_cell(run.get("objective"), text=fmt(run.get("objective"), "—"),
                               cls="text"))
    cells += [make_cell(num(run.get("score"))), *(make_cell(num(run.get(m)))
                                                   for m in cols.metrics)]
    gp = run.gates_pass
    cells += [make_cell(gp, text=fmt(gp), cls=_pass_cls(gp, "nm")), *_gate_cells(res, run),
              *_full_cells(run, cols.full)]
    steps, frac = num(run.get("train_steps")), run.compute_fraction
    cells += [make_cell(steps, text=fmt(int(steps)) if math.isfinite(steps) else NOT_MEASURED),
              make_cell(frac, text=f"{100 * frac:.0f}%" if math.isfinite(frac) else NOT_MEASURED),
              *(make_cell(run.get(c)) for c in cols.extra)]
    cls = [run.status] + (["winner"] if run.winner else []) + (["promoted"] if run.promoted else [])
    return SimpleNamespace(cls=" ".join(cls), cells=cells)


def ranking_table(res: RoundResults):
    cols = _ranking_columns(res)
    rows = [_ranking_row(res, run, cols) for run in res.runs.values()]
    return _macros().table(cols.headers, rows, id="ranking", sortable=True)


# ----------------------------------------------------------------------------- sections


def regime_section(res: RoundResults):
    """Per-regime (and per-channel) accuracy of the winner(s) and promoted runs on their
    record eval files, next to the baselines on the same samples."""
    runs = list(dict.fromkeys(res.winners + res.promoted)) or res.names[:1]
    rows, missing, chan_names = [], [], []
    for name in runs:
        run = res.runs.get(name)
        got = regime_rows(name, run.eval if run is not None else None)
        if got is None:
            missing.append(name)
            continue
        rows += got[0]
        chan_names = chan_names or got[1]
    headers = ["run", "eval suite", "split", "regime", "samples", "nRMSE", "persistence",
               "linear extrapolation", "reference model", "skill vs persistence",
               *[f"nRMSE {c}" for c in chan_names]]
    cells = [[make_cell(v) for v in r + [None] * (len(headers) - len(r))] for r in rows]
    return render("regimes.html", headers=headers, rows=cells, missing=missing)


def effects_response(res: RoundResults) -> tuple[pd.Series, str]:
    """Per-run response for the effects fit: the objective at the probe point (decision.json
    ``run_score``, from probe_eval.nc) -- every run has it at the same training step, while
    the ranking's score compares early-stopped runs (probe checkpoint) with runs trained to the
    end. Falls back to the ranking score when a run has no decision. Diverged -> NaN."""
    vals, sources = [], set()
    for run in res.runs.values():
        if run.diverged:
            vals.append(math.nan)
            continue
        v = run.decision.run_score if run.decision else math.nan
        if math.isfinite(v):
            sources.add("probe")
        else:
            v = num(run.get("score"))
            sources.add("ranking")
        vals.append(v if math.isfinite(v) else math.nan)
    src = ("probe" if sources == {"probe"} else "ranking" if sources == {"ranking"}
           else "mixed")
    return pd.Series(vals, index=res.ranking.index, dtype=float), src


RESPONSE_SOURCES = {
    "probe": "the objective at the probe point (each run's probe_eval, the score the "
             "early-stopping decision used), so early-stopped runs and runs trained to the "
             "end are compared at the same training step",
    "ranking": "the ranking's objective score (small or full eval; early-stopped runs are "
               "scored at their probe checkpoint)",
    "mixed": "the probe-point objective where a decision exists, else the ranking score",
}
MAIN_EFFECTS_CAPTION = (
    "Main effects: model-adjusted mean of the response per level of each swept knob (filled, "
    "line: overall mean + least-squares effect, so levels that happened to run with good values "
    "of other knobs get no credit for them) and the raw mean over the runs at that level "
    "(hollow, n = runs); p from the F test of the knob in the additive model. ")


def _effects_tables(eff: EffectsResult) -> dict[str, Any]:
    anova = [[a["term"].replace(":", " × "), a["kind"],
              short_label(eff.labels.get(tuple(a["knobs"]), "—"))
              if a["kind"] == "interaction" else "—",
              int(a["df"]), a["sum_sq"], a["F"], a["p_value"]] for _, a in eff.anova.iterrows()]
    main = [[m["knob"], fmt(m["level"]), int(m["n"]), m["mean"], m["adjusted"], m["effect"]]
            for _, m in eff.main.iterrows()]
    return {"anova": SimpleNamespace(
                headers=["term", "kind", "playbook note", "df", "sum of squares", "F", "p"],
                rows=[[make_cell(v) for v in r] for r in anova]),
            "main": SimpleNamespace(
                headers=["knob", "level", "runs", "raw mean", "adjusted mean (model)",
                         "effect (vs mean of levels)"],
                rows=[[make_cell(v) for v in r] for r in main])}


def effects_section(res: RoundResults) -> tuple[EffectsResult | None, str, Any]:
    """The effects fit of the swept knobs: (result, main-effects caption, section HTML)."""
    if not res.knobs:
        return None, "No swept knobs in the ranking: no effects to estimate.", render(
            "effects.html", problem="no knobs")
    runs = res.ranking[[f"knob.{k}" for k in res.knobs]].set_axis(res.knobs, axis=1).copy()
    runs["response"], src = effects_response(res)
    try:
        eff = estimate_effects(runs, list(res.knobs), "response")
    except Exception as exc:  # noqa: BLE001 - the report must still be written
        return None, f"Effects could not be estimated: {exc}", render(
            "effects.html", problem="error", error=f"{type(exc).__name__}: {exc}")
    explain = (f"Response: {res.objective} — {RESPONSE_SOURCES[src]}; lower is better. Diverged "
               f"runs are left out. {eff.n_runs} runs used, knobs as categorical factors, OLS "
               "with nested-model F tests (statsmodels anova_lm); residual degrees of freedom: "
               f"{eff.residual_df}.")
    notes = design_notes(res.plan.get("designs")) + (
        eff.notes or ["Every requested effect was estimable."])
    html = render("effects.html", problem=None, explain=explain, notes=notes,
                  fixed=", ".join(f"{k} = {fmt(v)}" for k, v in eff.fixed.items()),
                  **_effects_tables(eff))
    return eff, MAIN_EFFECTS_CAPTION + explain, html


def decisions_section(res: RoundResults) -> SimpleNamespace:
    rows = [[make_cell(name), *(make_cell(d.fields.get(f)) for f in DECISION_FIELDS)]
            for name, d in res.decisions.items()]
    return SimpleNamespace(headers=["run", *DECISION_FIELDS], rows=rows)


def compact(d: Any) -> str:
    if not isinstance(d, Mapping) or not d:
        return "—"
    return ", ".join(f"{k}={v}" for k, v in d.items())


def plan_section(res: RoundResults) -> SimpleNamespace:
    """The planned runs: the nominal knobs that differ between runs (the common ones folded),
    the effective values where the preset changed them."""
    specs = [sp for sp in res.plan.get("runs") or [] if isinstance(sp, Mapping)]
    nominals = [sp.get("nominal") or {} for sp in specs]
    keys = list(dict.fromkeys(k for nm in nominals if isinstance(nm, Mapping) for k in nm))
    common = {k: nominals[0].get(k) for k in keys
              if all(isinstance(nm, Mapping) and nm.get(k) == nominals[0].get(k)
                     for nm in nominals)} if nominals and isinstance(nominals[0], Mapping) else {}
    rows = []
    for spec in specs:
        nominal, effective = spec.get("nominal") or {}, spec.get("effective") or {}
        changed = ({k: v for k, v in effective.items() if nominal.get(k) != v}
                   if isinstance(effective, Mapping) else {})
        varied = ({k: v for k, v in nominal.items() if k not in common}
                  if isinstance(nominal, Mapping) else nominal)
        rows.append([make_cell(v) for v in (
            spec.get("run"), spec.get("block"), spec.get("seed"), compact(varied),
            compact(changed), spec.get("lr_scaled"), compact(spec.get("fixed_from")))])
    return SimpleNamespace(
        headers=["run", "block", "seed", "nominal (knobs that differ between runs)",
                 "effective (where different)", "lr scaled", "fixed from"],
        rows=rows, common=compact(common) if common else "", n_specs=len(specs))


# ----------------------------------------------------------------------------- provenance


def _attr_counts(res: RoundResults, keys: tuple[str, ...]) -> tuple[dict, dict]:
    """How many of the round's logs and eval files carry each provenance value / package."""
    seen: dict[str, dict[str, int]] = {k: {} for k in keys}
    packages: dict[str, dict[str, int]] = {}
    files = [lg.ds for lg in res.logs.values()] + list(res.evals.values())
    for ds in files:
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
    return seen, packages


def provenance_section(res: RoundResults) -> SimpleNamespace:
    """Preset, the hardware the training jobs recorded, code and package versions."""
    keys = ("code_version", "physweep_version", "energy_source", "hostname")
    seen, packages = _attr_counts(res, keys)
    hw, hw_source = res.hardware()
    rows = [("preset", res.plan.get("preset", "—"), "plan")]
    rows += [("hardware", v, hw_source) for v in hw]
    rows += [("device", v, f"{n} train log(s)") for v, n in res.devices().items()]
    rows += [(k, v, f"{n} file(s)") for k in keys for v, n in seen[k].items()]
    rows += [(f"package {name}", v, f"{n} file(s)") for name in sorted(packages)
             for v, n in packages[name].items()]
    rows.append(("report built by physweep", f"{__version__} ({code_version()})", "this page"))
    mixed = [k for k in keys if len(seen[k]) > 1]
    mixed += [f"package {n}" for n, vs in packages.items() if len(vs) > 1]
    return SimpleNamespace(rows=[[make_cell(v) for v in r] for r in rows], mixed=mixed)


def rerun_section(res: RoundResults, hint: str) -> SimpleNamespace:
    """The rerun command of every run and its resolved configuration (run_spec)."""
    winners, names = res.winners, res.names
    example_run = winners[0] if winners else (names[0] if names else "RUN")
    trained = {str(sp.get("run")): str(sp["training"]) for sp in (res.plan.get("runs") or [])
               if isinstance(sp, Mapping) and sp.get("training")}

    def _hint(run: str) -> str:  # retraining a run retrains every run on its training
        return hint.format(round=res.name, run=run, training=trained.get(
            run, f"<its training: runs/{run}/training.json>"))

    try:
        example = _hint(example_run)
        cmds = {r: _hint(r) for r in names}
    except (KeyError, IndexError, ValueError) as exc:
        res.problems.append(f"rerun_hint template: {exc}")
        example, cmds = hint, {}
    rows = []
    for run in res.runs.values():
        spec = run.run_spec
        nominal = spec.get("nominal") if isinstance(spec, Mapping) else None
        shown = ({k: nominal.get(k) for k in res.knobs if k in nominal}
                 if isinstance(nominal, Mapping) else {})
        rows.append(SimpleNamespace(
            name=run.name, status=run.status, cmd=cmds.get(run.name, "—"),
            code=run.log.code_version or "—" if run.log is not None else "—",
            shown=compact(shown) if shown else "run_spec",
            spec=json.dumps(spec, indent=1, sort_keys=True) if isinstance(spec, Mapping)
            else None))
    return SimpleNamespace(example_run=example_run, example=example, runs=rows)


# ----------------------------------------------------------------------------- writing


def _write_figures(figures: list[Figure], figures_dir: Path) -> None:
    for f in figures:
        with atomic_path(Path(figures_dir) / F.FIGURE_NAMES[f.key]) as tmp:
            tmp.write_bytes(f.png)


def _table_pages(res: RoundResults, ranking, effects, regimes) -> dict[str, str]:
    """Standalone table pages for Snakemake's report."""
    n = res.name
    return {
        "ranking": render("table_page.html", title=f"physweep {n}: ranking",
                          heading=f"Ranking of {n}", note="★ winner · ▲ promoted · click a "
                          "column header to sort. " + RANK_RULE, content=ranking),
        "effects": render("table_page.html", title=f"physweep {n}: effects",
                          heading=f"Effects of the swept knobs: {n}", note="", content=effects),
        "regimes": render("table_page.html", title=f"physweep {n}: accuracy by regime",
                          heading=f"Accuracy by regime: {n}", note="", content=regimes)}


def write_round_report(res: RoundResults, out_html: Path, figures_dir: Path | None = None,
                       rerun_hint: str = DEFAULT_RERUN_HINT, tables_dir: Path | None = None
                       ) -> Path:
    """Render the report of a loaded round (see :func:`build_round_report`)."""
    eff, eff_caption, effects_html = effects_section(res)
    groups = round_figures(res)
    eff_figs = effect_figures(res, eff, eff_caption)
    if figures_dir is not None:
        _write_figures([f for figs in groups.values() for f in figs] + eff_figs, figures_dir)
    ranking_html, regime_html = ranking_table(res), regime_section(res)
    if tables_dir is not None:
        for key, text in _table_pages(res, ranking_html, effects_html, regime_html).items():
            write_text(Path(tables_dir) / f"{key}.html", text)
    rerun = rerun_section(res, rerun_hint)  # may add a problem: before the page
    html = render(
        "round.html", title=f"physweep {res.name}", name=res.name,
        preset=res.plan.get("preset", "—"), n_runs=len(res.runs), objective=res.objective,
        s=_summary(res), rank_rule=RANK_RULE, ranking_html=ranking_html,
        regime_html=regime_html, figure_groups=list(groups.items()),
        effects_html=effects_html, effect_figures=eff_figs, decisions=decisions_section(res),
        es=stopping_section(res),
        warnings=_warnings(res), plan=plan_section(res), problems=res.problems,
        provenance=provenance_section(res), rerun=rerun)
    out_html = Path(out_html)
    write_text(out_html, html)
    return out_html


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
    res = load_round(round_name, ranking_csv, decisions, train_logs, eval_files, winners_yaml,
                     plan_json)
    return write_round_report(res, out_html, figures_dir, rerun_hint, tables_dir)
