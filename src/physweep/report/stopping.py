"""What early stopping saved (issue #12): the round's training compute against the exhaustive
budget, per training; the stopped runs against the baseline band; and in an exhaustive round
(early stopping off) what the sigma rule would have stopped and whether that would have lost the
winner.

Budget unit: one training's full budget (every training trained to the end = the exhaustive
budget). Runs on one training (plan.json's ``training``) share it: a training stops at the probe
only when every run on it stopped (or diverged), so a stopped run whose training continued for
another run saved nothing. A training stage copied from an identical training (its
``identity.json`` records ``reused_from``) was not trained: it costs 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from physweep.report.html import fmt, make_cell
from physweep.report.model import Decision, RoundResults, RunResult, num

__all__ = ["ComputeTotals", "Training", "compute_totals", "copied_units", "ledger_totals",
           "spent_hours", "stopping_section", "stopping_summary", "training_ledger"]

#: decisions that end a training at the probe point
ENDS_AT_PROBE = ("stop", "diverged")
SIGMA_METHODS = {
    "seeds": "the standard deviation of the baseline replicates' probe scores",
    "bootstrap": "the bootstrap standard deviation of the single baseline's mean score over its "
                 "evaluated trajectories",
    "none": "not estimated: no usable baseline probe, so nothing could be stopped",
}


@dataclass
class Training:
    """One training of the round and what its runs decided at the probe point."""

    name: str
    runs: list[str]
    decisions: dict[str, str | None]  # run -> the decision counted (taken, or the rule's)
    fraction: float  # budget fraction it ran: its longest run's compute fraction
    probe_fraction: float
    copied: float = 0.0  # budget units copied from an identical training, not trained
    copied_from: list[str] = field(default_factory=list)
    total_steps: float = math.nan  # its full budget in steps (its longest run's)
    stages: dict[str, str | None] = field(default_factory=dict)  # stage -> reused_from

    @property
    def spent(self) -> float:
        """Budget units trained (NaN when no run on it has a compute fraction)."""
        return self.fraction - self.copied if math.isfinite(self.fraction) else math.nan

    @property
    def stopped(self) -> bool:
        """Every run on it ended at the probe, at least one by the sigma rule."""
        decided = list(self.decisions.values())
        return (bool(decided) and all(d in ENDS_AT_PROBE for d in decided)
                and "stop" in decided)

    @property
    def saved(self) -> float:
        """Budget units early stopping saved: the rest of the budget after the probe."""
        if not self.stopped:
            return 0.0
        if math.isfinite(self.probe_fraction):
            return 1.0 - self.probe_fraction
        return 1.0 - self.fraction if math.isfinite(self.fraction) and self.fraction < 1 \
            else math.nan


def copied_units(stages: dict[str, str | None], fraction: float, probe: float) -> float:
    """Budget units of the stages copied instead of trained (``stages``: stage ->
    ``reused_from``, None for a stage trained), of a training that ran ``fraction`` of its
    budget: the probe stage ran to the probe fraction ``probe``, the final stage the rest. With
    the probe fraction unknown a training counts as copied only when every stage it recorded
    was. Pure: ``physweep status`` calls it on a round in progress."""
    reused = {s for s, src in stages.items() if src}
    if not reused or not math.isfinite(fraction):
        return 0.0
    if reused == set(stages):
        return fraction
    if not math.isfinite(probe):
        return 0.0
    probe_part = min(fraction, probe)
    return (probe_part if "probe" in reused else 0.0) + \
        (fraction - probe_part if "final" in reused else 0.0)


def _probe_fraction(decisions: list[Decision]) -> float:
    return next((d.probe_fraction for d in decisions if math.isfinite(d.probe_fraction)),
                math.nan)


def training_ledger(res: RoundResults, rule: bool = False) -> list[Training]:
    """The round's trainings with their compute; ``rule``: count the sigma rule's decisions
    (``rule_decision``) instead of the decisions taken -- what the rule would have saved."""
    out = []
    for name, runs in res.trainings.items():
        members = [res.runs[r] for r in runs]
        decs = [r.decision for r in members if r.decision is not None]
        fracs = [f for r in members if math.isfinite(f := r.compute_fraction)]
        fraction = max(fracs) if fracs else math.nan
        longest = max(members, key=lambda r: r.compute_fraction
                      if math.isfinite(r.compute_fraction) else -1.0)
        probe = _probe_fraction(decs)
        stages = next((r.stages for r in members if r.stages), {})
        out.append(Training(
            name=name, runs=runs, fraction=fraction, probe_fraction=probe,
            decisions={r.name: (r.decision.rule_decision if rule else r.decision.decision)
                       if r.decision else None for r in members},
            copied=copied_units(stages, fraction, probe),
            copied_from=sorted({src for src in stages.values() if src}),
            total_steps=longest.total_steps, stages=stages))
    return out


@dataclass(frozen=True)
class ComputeTotals:
    """A round's training compute counted per training (the round report's summary and
    section, and the index page). Budget units: one training's full budget; the exhaustive
    budget (every training to the end) is ``budget`` units."""

    budget: int  # trainings
    spent: float  # budget units trained (copied stages count 0); NaN: no compute fraction
    copied: float  # budget units copied from identical trainings
    saved: float  # budget units early stopping saved (stopped trainings only)
    n_stopped: int  # trainings stopped at the probe
    n_copied: int  # trainings with a copied stage
    steps_spent: float  # the same in training steps; NaN when a training's budget in steps
    steps_saved: float  # is unknown

    def pct(self, units: float) -> float:
        """``units`` in % of the exhaustive budget."""
        return 100.0 * units / self.budget if self.budget else math.nan


def compute_totals(res: RoundResults, ledger: list[Training] | None = None) -> ComputeTotals:
    """The round's training compute, per training (:func:`training_ledger`'s decisions taken)."""
    return ledger_totals(training_ledger(res) if ledger is None else ledger)


def ledger_totals(ledger: list[Training]) -> ComputeTotals:
    """The totals of a list of trainings. Pure: ``physweep status`` builds its trainings from
    the files of a round in progress (no :class:`RoundResults`) and totals them here."""
    spent = [t.spent for t in ledger]
    steps = [t.total_steps for t in ledger]
    known = bool(ledger) and all(math.isfinite(s) and s > 0 for s in steps)
    return ComputeTotals(
        budget=len(ledger),
        spent=_total(spent) if any(math.isfinite(x) for x in spent) else math.nan,
        copied=_total(t.copied for t in ledger), saved=_total(t.saved for t in ledger),
        n_stopped=sum(t.stopped for t in ledger), n_copied=sum(t.copied > 0 for t in ledger),
        steps_spent=_total(t.spent * n for t, n in zip(ledger, steps, strict=True))
        if known else math.nan,
        steps_saved=_total(t.saved * n for t, n in zip(ledger, steps, strict=True))
        if known else math.nan)


def exhaustive(res: RoundResults) -> bool:
    """Early stopping was off: every decision says so (an exhaustive round)."""
    decs = list(res.decisions.values())
    return bool(decs) and not any(d.enabled for d in decs)


def _total(values) -> float:
    return float(sum(v for v in values if math.isfinite(v)))


def _units(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else "not measured"


def _pct(x: float, of: float) -> str:
    return f"{100 * x / of:.3g}%" if of and math.isfinite(x) else "not measured"


def _saved_hours(res: RoundResults, trainings: list[Training]) -> float:
    """Hours the stopped trainings did not train, at their runs' measured step time."""
    total = 0.0
    for t in trainings:
        if not t.stopped:
            continue
        run = next((res.runs[r] for r in t.runs if res.runs[r].log is not None), None)
        sps = run.log.step_time if run is not None else math.nan
        hours = t.saved * (run.total_steps if run is not None else math.nan) * sps / 3600
        if not math.isfinite(hours):
            return math.nan
        total += hours
    return total


def spent_hours(res: RoundResults, trainings: list[Training]) -> float:
    """Hours the round trained, per training: the logged step times of its longest log (a
    final log holds the probe's steps too), without the steps of a stage copied from an
    identical training. NaN when a training has no log with step times."""
    total = 0.0
    for t in trainings:
        reused = {s for s, src in t.stages.items() if src}
        if reused and reused == set(t.stages):
            continue  # copied, not trained
        logs = [res.runs[r].log for r in t.runs if res.runs[r].log is not None]
        log = max(logs, key=lambda lg: lg.ds.sizes.get("step", 0)) if logs else None
        secs = log.values("step_time_s") if log is not None else None
        if secs is None or "step" not in log.ds.coords:
            return math.nan
        keep = np.isfinite(secs)
        cut = t.probe_fraction * log.steps_total
        if reused and math.isfinite(cut):  # one stage copied: the other's steps only
            steps = np.asarray(log.ds["step"].values, dtype=float)
            keep &= (steps > round(cut)) if "probe" in reused else (steps <= round(cut))
        total += float(secs[keep].sum())
    return total / 3600


def stopping_summary(res: RoundResults) -> dict:
    """The summary list's compute, early-stopping and shared-training figures, counted per
    training."""
    ledger = training_ledger(res)
    c = compute_totals(res, ledger)
    hours, used_hours = _saved_hours(res, ledger), spent_hours(res, ledger)
    stop_runs = [r for t in ledger for r, d in t.decisions.items() if d == "stop"]
    alone = _total(res.runs[r].compute_fraction for r in res.runs)
    spent = c.spent if math.isfinite(c.spent) else 0.0
    return {
        "saved_pct": f"{c.pct(c.saved):.3g}" if c.budget else "not measured",
        "saved_units": _units(c.saved), "budget": c.budget, "n_stopped_trainings": c.n_stopped,
        "saved_hours": f"{hours:.3g}" if c.n_stopped and math.isfinite(hours) else "",
        "stopped_sharing": [r for t in ledger if not t.stopped for r in t.runs
                            if r in stop_runs],
        "unit": res.hours_unit(),
        "used_units": _units(c.spent) if math.isfinite(c.spent) else "",
        "used_pct": f"{c.pct(c.spent):.3g}" if math.isfinite(c.spent) and c.budget else "",
        "n_copied": c.n_copied, "copied_units": _units(c.copied),
        "round_hours": f"{used_hours:.3g}" if math.isfinite(used_hours) and ledger else "",
        "sharing": SimpleNamespace(
            trainings=c.budget, spent=f"{spent:.3g}", saved=f"{alone - spent - c.copied:.3g}",
            alone=f"{alone:.3g}", copied=f"{c.copied:.3g}", n_copied=c.n_copied),
    }


# ----------------------------------------------------------------------------- the section


def _band(res: RoundResults) -> SimpleNamespace | None:
    """The baseline band every decision was taken against (the first decision that has it)."""
    d = next((d for d in res.decisions.values()
              if math.isfinite(d.get("baseline_mean")) or math.isfinite(d.get("sigma"))), None)
    if d is None:
        return None
    mean, sigma, k = d.get("baseline_mean"), d.get("sigma"), d.get("sigma_factor")
    method = str(d.fields.get("sigma_method") or "none")
    baselines = [r for r, x in res.decisions.items() if x.decision == "baseline"]
    differ = any((x.get("baseline_mean"), x.get("sigma")) != (mean, sigma)
                 for x in res.decisions.values()
                 if math.isfinite(x.get("baseline_mean")) and math.isfinite(x.get("sigma")))
    return SimpleNamespace(
        mean=fmt(mean), sigma=fmt(sigma), k=fmt(k), threshold=fmt(mean - k * sigma),
        sigma_raw=sigma, method=method, how=SIGMA_METHODS.get(method, method),
        baselines=baselines, differ=differ)


def _sigma_units(d: Decision) -> float:
    imp, sigma = d.get("improvement"), d.get("sigma")
    return imp / sigma if math.isfinite(imp) and math.isfinite(sigma) and sigma > 0 else math.nan


def _best(res: RoundResults) -> RunResult | None:
    """The best run by the small eval (rank 1)."""
    ranked = [r for r in res.runs.values() if math.isfinite(r.rank)]
    return min(ranked, key=lambda r: r.rank) if ranked else None


def _stopped_rows(res: RoundResults, runs: list[str], ledger: list[Training],
                  rule: bool) -> list[list]:
    training_of = {r: t for t in ledger for r in t.runs}
    rows = []
    for name in runs:
        run, t = res.runs[name], training_of[name]
        d = run.decision
        others = [r for r in t.runs if r != name]
        shared = ("alone" if not others else
                  f"shared with {', '.join(others)}: "
                  + ("stopped too" if t.stopped else "continued, nothing saved"))
        row = [make_cell(name, cls="text"), make_cell(t.name, cls="text"),
               make_cell(shared, cls="text"), make_cell(d.run_score),
               make_cell(d.get("improvement")), make_cell(_sigma_units(d))]
        if rule:
            score = num(run.get("score"))
            rank = run.rank
            marks = [m for m, on in (("winner", run.winner), ("best by small eval",
                                                               _best(res) is run)) if on]
            row += [make_cell(score), make_cell(int(rank) if math.isfinite(rank) else None,
                                                text=str(int(rank)) if math.isfinite(rank)
                                                else "unranked"),
                    make_cell(", ".join(marks) or "—", cls="fail" if marks else "text")]
        rows.append(row)
    return rows


def _headers(band: SimpleNamespace | None, rule: bool) -> list[str]:
    k = band.k if band is not None else "k"
    heads = ["run", "training", "training shared?", "probe score",
             "improvement (baseline mean − probe score)", f"improvement / σ (stop below {k})"]
    if rule:
        heads += ["final small-eval score", "small-eval rank", "would have lost"]
    return heads


def _training_rows(ledger: list[Training], rule: bool) -> list[list]:
    rows = []
    for t in ledger:
        decided = ", ".join(f"{r}: {d or '—'}" for r, d in t.decisions.items())
        note = ("every run on it " + ("would have ended" if rule else "ended") + " at the probe"
                if t.stopped else "continued for another run: nothing saved")
        if t.copied:
            note += f"; copied from {', '.join(t.copied_from)} (not trained)"
        rows.append([make_cell(t.name, cls="text"), make_cell(decided, cls="text"),
                     make_cell(t.fraction, text=_pct(t.fraction, 1.0)),
                     make_cell(t.spent), make_cell(t.saved), make_cell(note, cls="text")])
    return rows


def _winner_check(res: RoundResults, would: list[str]) -> str:
    """Would the rule have stopped the winner (or the best run by the small eval)?"""
    best = _best(res)
    lost = [r for r in would if r in res.winners or (best is not None and r == best.name)]
    best_txt = (f"the best run by the small eval is {best.name} (final small-eval score "
                f"{fmt(num(best.get('score')))})" if best is not None
                else "no run is ranked by the small eval")
    if lost:
        return (f"The rule would have lost the winner: it would have stopped "
                f"{', '.join(lost)}; {best_txt}.")
    scores = [num(res.runs[r].get("score")) for r in would]
    finite = [s for s in scores if math.isfinite(s)]
    tail = (f" The best of the runs it would have stopped scored {fmt(min(finite))} at the "
            "end." if finite else "")
    return f"The rule would not have stopped the winner: {best_txt}.{tail}"


def stopping_section(res: RoundResults) -> SimpleNamespace:
    """The context of the section (``templates/round_stopping.html``)."""
    if not res.decisions:
        return SimpleNamespace(state="none", line="No early-stopping decisions recorded.")
    rule = exhaustive(res)
    ledger = training_ledger(res, rule=rule)
    stopped = [r for t in ledger for r, d in t.decisions.items() if d == "stop"]
    c = compute_totals(res, ledger)
    budget, saved, n_stopped_t = c.budget, c.saved, c.n_stopped
    if not stopped:
        line = ("Early stopping was off in this round (exhaustive: every run trained to the "
                "end), and the σ rule would have stopped no run." if rule else
                "No run was early-stopped: every training ran to the end.")
        return SimpleNamespace(state="nothing", line=line)
    spent = c.spent
    saving = (f"{_units(saved)} budget units ({_pct(saved, budget)} of the exhaustive budget) "
              f"on {n_stopped_t} of {budget} trainings")
    if rule:
        lead = (f"Early stopping was off in this round (exhaustive: every run trained to the "
                f"end; training compute spent {_units(spent)} of {budget} budget units). The "
                f"σ rule would have stopped {len(stopped)} run(s): {', '.join(stopped)}, "
                f"saving {saving}.")
    else:
        lead = (f"Training compute spent {_units(spent)} of {budget} budget units "
                f"({_pct(spent, budget)} of the exhaustive budget: every training to the end); "
                f"early stopping saved {saving}.")
    band = _band(res)
    return SimpleNamespace(
        state="exhaustive" if rule else "stopped", lead=lead, band=band,
        trainings=SimpleNamespace(
            headers=["training", "runs: decision" + (" of the rule" if rule else ""),
                     "trained (% of budget)", "spent (budget units)",
                     ("the rule would have saved" if rule else "saved by early stopping")
                     + " (units)", "note"],
            rows=_training_rows([t for t in ledger if "stop" in t.decisions.values()], rule)),
        runs=SimpleNamespace(headers=_headers(band, rule),
                             rows=_stopped_rows(res, stopped, ledger, rule)),
        winner=_winner_check(res, stopped) if rule else "")
