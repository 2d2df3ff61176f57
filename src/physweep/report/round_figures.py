"""The round report's figures as functions of the round's results (:class:`RoundResults`).

Each function returns a :class:`Figure`: the PNG (drawn by :mod:`physweep.report.figures`) and
its caption (``templates/round_captions.html``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from physweep.report import figures as F
from physweep.report.effects import EffectsResult, short_label
from physweep.report.evaldata import calibration, lead_series, pareto_baselines
from physweep.report.html import environment
from physweep.report.model import RoundResults, num
from physweep.report.stopping import exhaustive

__all__ = ["Figure", "round_figures"]


@dataclass(frozen=True)
class Figure:
    key: str  # a key of figures.FIGURE_NAMES
    png: bytes
    caption: Any  # Markup

    @property
    def alt(self) -> str:
        return self.key.replace("_", " ")


def _captions():
    return environment().get_template("round_captions.html").module


def _baseline_runs(res: RoundResults) -> list[str]:
    out = [r for r, d in res.decisions.items() if d.decision == "baseline"]
    return out + [r.name for r in res.runs.values() if str(r.block) == "baseline"
                  and r.name not in out]


def _probe_steps(res: RoundResults) -> list[int]:
    steps = []
    for name, d in res.decisions.items():
        run = res.runs.get(name)
        total = run.total_steps if run is not None else math.nan
        if math.isfinite(d.probe_fraction) and math.isfinite(total):
            steps.append(round(d.probe_fraction * total))
    return steps


def learning_curves(res: RoundResults) -> Figure:
    curves, div_steps, relative, stage_steps = {}, {}, {}, set()
    for run in res.runs.values():
        loss = run.log.values("loss") if run.log is not None else None
        if loss is None:
            continue
        loss = loss.reshape(-1)
        step = run.log.values("step")
        step = step if step is not None and step.size == loss.size else np.arange(loss.size,
                                                                                 dtype=float)
        curves[run.name] = (step, loss)
        roll, pers = run.log.values("loss_rollout"), run.log.values("loss_persistence")
        if roll is not None and pers is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                relative[run.name] = (step, roll.reshape(-1) / pers.reshape(-1))
        hz = run.log.values("horizon")
        if hz is not None:  # steps where the curriculum's horizon changes
            stage_steps.update(float(x) for x in step[1:][np.diff(hz.reshape(-1)) != 0])
        if run.status == "diverged" or run.log.status == "diverged":
            div_steps[run.name] = run.log.diverged_step
    probe, baseline = _probe_steps(res), _baseline_runs(res)
    png = F.learning_curves_figure(curves, probe_steps=probe, baseline_runs=baseline,
                                   highlight=res.winners, diverged=div_steps, relative=relative,
                                   stage_steps=sorted(stage_steps))
    probe_txt = ", ".join(str(int(p)) for p in sorted(set(probe))) or "not recorded"
    return Figure("learning_curves", png, _captions().learning_curves(probe_txt, baseline))


def error_vs_lead(res: RoundResults) -> Figure:
    series, baselines = lead_series(res.evals)
    png = F.error_vs_lead_figure(series, highlight=res.winners, baselines=baselines)
    return Figure("error_vs_lead", png, _captions().error_vs_lead())


def pareto_cost(res: RoundResults) -> tuple[list[float], str, str]:
    """The Pareto figure's cost per run: energy per step when every run with an error has it,
    else time per step; with its axis label and a note on what is missing."""
    runs = list(res.runs.values())
    with_err = [r for r in runs if math.isfinite(num(r.get("nrmse")))]
    no_energy = [r for r in with_err if not math.isfinite(num(r.get("j_per_step")))]
    if with_err and not no_energy:
        return [num(r.get("j_per_step")) for r in runs], "energy per step (J/step, measured)", ""
    note = (f"energy missing for {len(no_energy)} of {len(with_err)} runs: time per step used "
            "instead" if with_err else "")
    return ([num(r.get("s_per_step")) for r in runs],
            "time per step (s/step) — energy not measured", note)


def pareto(res: RoundResults) -> Figure:
    cost, label, note = pareto_cost(res)
    err = [num(r.get("nrmse")) for r in res.runs.values()]
    png = F.pareto_figure(res.names, cost, err, cost_label=label, highlight=res.winners,
                          note=note, baselines=pareto_baselines(res.ranking),
                          error_label="nRMSE (small eval, in-distribution)")
    excluded = [r for r, e in zip(res.names, err, strict=True) if not math.isfinite(e)]
    return Figure("pareto", png, _captions().pareto(label, excluded))


def gate_matrix(res: RoundResults) -> Figure:
    gates = res.gates
    passed = np.full((len(res.runs), len(gates)), np.nan)
    gvals = np.full_like(passed, np.nan)
    for i, run in enumerate(res.runs.values()):
        for j, g in enumerate(gates):
            passed[i, j] = {True: 1.0, False: 0.0}.get(run.gates[g].passed, np.nan)
            gvals[i, j] = run.gates[g].value
    png = F.gate_matrix_figure(res.names, gates, passed, gvals)
    return Figure("gate_matrix", png, _captions().gate_matrix())


def reliability(res: RoundResults) -> Figure:
    promoted, winners = res.promoted, res.winners
    runs = promoted or winners
    note = "" if promoted else ("no promoted run: winner(s) shown" if winners else "")
    evals = res.evals
    curves = {r: c for r in runs if (c := calibration(evals.get(r))) is not None}
    title = "Reliability of the " + ("promoted runs (full eval)" if promoted else "winner(s)")
    png = F.reliability_figure(curves, title=title, note=note)
    return Figure("reliability", png, _captions().reliability(list(curves)))


def main_panels(eff: EffectsResult | None) -> dict[str, dict[str, Any]]:
    if eff is None:
        return {}
    out = {}
    for knob, g in eff.main.groupby("knob", sort=False):
        out[str(knob)] = {"levels": list(g["level"]), "ls_mean": list(g["adjusted"]),
                          "mean": list(g["mean"]), "n": list(g["n"]),
                          "p": eff.p_value(str(knob))}
    return out


def inter_panels(eff: EffectsResult | None) -> list[dict[str, Any]]:
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


def effect_figures(res: RoundResults, eff: EffectsResult | None, caption) -> list[Figure]:
    label = f"{res.objective} at the probe point (lower is better)"
    return [Figure("main_effects", F.main_effects_figure(main_panels(eff), response_label=label),
                   caption),
            Figure("interactions", F.interactions_figure(inter_panels(eff), response_label=label),
                   _captions().interactions())]


def early_stopping(res: RoundResults) -> Figure:
    """Every run's probe score by decision (the rule's in an exhaustive round), the band."""
    rule, decs = exhaustive(res), res.decisions
    band = next((d for d in decs.values() if math.isfinite(d.get("baseline_mean"))), None)
    png = F.early_stopping_figure(
        {r: d.run_score for r, d in decs.items()},
        {r: d.rule_decision if rule else d.decision for r, d in decs.items()},
        mean=band.get("baseline_mean") if band else math.nan,
        sigma=band.get("sigma") if band else math.nan,
        sigma_factor=band.get("sigma_factor") if band else math.nan,
        score_label=f"{res.objective} at the probe point", rule=rule)
    return Figure("early_stopping", png, _captions().early_stopping(rule))


def round_figures(res: RoundResults) -> dict[str, list[Figure]]:
    """The figures of the round report by section title (effects figures: see
    :func:`effect_figures`)."""
    return {"Training and accuracy": [learning_curves(res), error_vs_lead(res), pareto(res)],
            "Physics gates and calibration": [gate_matrix(res), reliability(res)],
            "Early stopping": [early_stopping(res)]}
