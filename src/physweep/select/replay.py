"""Replaying stopping policies on an exhaustive round (every run trained to the end).

An exhaustive round (``early_stop.enabled: false``) holds, per run, the small eval at the probe
point (``probe_eval.nc``), the small eval at the end (``small_eval.nc``) and the training log of
its training (loss at every step). A *policy* decides, run by run in the round's order, where
each run stops; since every run was trained to the end, what each policy would have cost and
picked can be read off the same files:

- physweep's σ rule at the round's probe fraction (``physweep.select.early_stop.decide``,
  exactly the workflow's decide step, enabled);
- Optuna's pruners (``MedianPruner``, ``PercentilePruner``, ``SuccessiveHalvingPruner``) fed
  either the same probe small-eval score (one intermediate value, at the probe step) or the
  training-loss curve (the rollout term of the loss, averaged over each reporting window);
- no stopping.

Compute is counted per training (runs that share a training stop it only when every one of them
stops), as a fraction of the exhaustive budget (every training to the end). The winner is the
best eligible run by the final small-eval objective among the runs a policy trained to the end
(eligible as in the workflow: gates pass, not diverged, not an extra baseline replicate);
regret = its exhaustive score minus the best eligible exhaustive score. Kendall's τ compares the
policy's ranking (runs trained to the end by final score, then stopped runs by the last value
the policy saw) with the exhaustive ranking (every run by final score).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from physweep.io import read_json
from physweep.select.early_stop import baseline_reference, decide
from physweep.select.scores import objective_score, read_eval


@dataclass
class RunCurve:
    """What a policy may see of one run, and what the exhaustive round says of it."""

    name: str
    training: str
    baseline: bool
    replicate: bool  # a baseline replicate with seed > 0: never the winner
    probe_score: float  # objective at the probe point (small eval)
    final_score: float  # objective at the end (small eval)
    eligible: bool  # gates pass and not diverged at the end
    probe_eval: Path | None = None
    loss_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # the rollout loss repeating the start state scores on the same batch (the trainer's
    # yardstick): loss / persistence removes the curriculum's jumps and most batch noise
    persistence: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass
class ExhaustiveRound:
    round: str
    objective: str
    probe_fraction: float
    total_steps: int
    runs: list[RunCurve]  # in the round's run order
    sigma_factor: float = 1.0

    @property
    def probe_step(self) -> int:
        return max(1, round(self.probe_fraction * self.total_steps))

    @property
    def trainings(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in self.runs:
            out.setdefault(r.training, []).append(r.name)
        return out


@dataclass
class Outcome:
    """One policy replayed on one round."""

    policy: str
    feed: str  # what the policy saw: "probe small eval", "training loss", "-"
    stop_fraction: dict[str, float]  # run -> fraction of the budget trained (1.0 = to the end)
    last_seen: dict[str, float]  # run -> last value the policy saw (stopped runs)
    compute: float = math.nan  # fraction of the exhaustive budget
    winner: str | None = None
    regret: float = math.nan
    tau: float = math.nan
    top_k_same: bool | None = None  # the policy's top-k = the exhaustive top-k
    stopped: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {"policy": self.policy, "feed": self.feed, "compute": self.compute,
                "saved": 1.0 - self.compute, "stopped": len(self.stopped),
                "winner": self.winner, "regret": self.regret, "kendall_tau": self.tau,
                "top_k_same": self.top_k_same}


# ------------------------------------------------------------------------------ reading a round


def load_exhaustive_round(round_dir: Path, loss_variable: str = "loss_rollout") -> ExhaustiveRound:
    """Read one finished round directory (``results/<round>``) trained with early stopping off.

    Raises ValueError naming the file when the round is not exhaustive (a run was stopped, so
    its final result does not exist) or is not finished."""
    import xarray as xr

    round_dir = Path(round_dir)
    plan_file = round_dir / "plan.json"
    if not plan_file.exists():
        raise ValueError(f"{plan_file}: missing; run the round first (benchmarks/"
                         "sweep_efficiency.py --run)")
    plan = read_json(plan_file)
    objective = str(plan["objective"])
    runs: list[RunCurve] = []
    fractions, factors, totals = set(), set(), set()
    for rec in plan["runs"]:
        name = str(rec["run"])
        run_dir = round_dir / "runs" / name
        decision_file = run_dir / "decision.json"
        final_file = run_dir / "small_eval.nc"
        if not decision_file.exists():
            raise ValueError(f"{decision_file}: missing; the round is not finished")
        decision = read_json(decision_file)
        if decision.get("decision") == "stop":
            raise ValueError(f"{decision_file}: decision 'stop': round {plan['round']} was run "
                             "with early stopping on; replay needs early_stop.enabled: false")
        if decision.get("decision") == "diverged":  # not trained on: its record is the probe
            final_file = run_dir / "probe_eval.nc"
        for f in (final_file, run_dir / "probe_eval.nc"):
            if not f.exists():
                raise ValueError(f"{f}: missing; the round is not finished")
        fractions.add(float(decision["probe_fraction"]))
        factors.add(float(decision.get("sigma_factor", 1.0)))
        final = read_eval(final_file)
        probe = read_eval(run_dir / "probe_eval.nc")
        training_dir = round_dir / "trainings" / str(rec["training"])
        log_file = training_dir / "final" / "train_log.nc"
        if not log_file.exists() and decision.get("decision") == "diverged":
            log_file = training_dir / "probe" / "train_log.nc"
        if not log_file.exists():
            raise ValueError(f"{log_file}: missing; the round is not finished")
        with xr.open_dataset(log_file) as ds:
            if loss_variable not in ds:
                raise ValueError(f"{log_file}: no variable {loss_variable!r}; "
                                 f"has {sorted(ds.data_vars)}")
            steps = ds["step"].values.astype(int)
            loss = ds[loss_variable].values.astype(float)
            persistence = (ds["loss_persistence"].values.astype(float)
                           if "loss_persistence" in ds else np.full_like(loss, np.nan))
            totals.add(int(ds.attrs.get("steps_total", steps.max())))
        baseline = bool(rec.get("baseline"))
        runs.append(RunCurve(
            name=name, training=_identity(training_dir, str(rec["training"])), baseline=baseline,
            replicate=baseline and int(rec.get("seed", 0)) != 0,
            probe_score=objective_score(probe, objective),
            final_score=objective_score(final, objective),
            eligible=bool(final["gates_pass"]) and not final["diverged"],
            probe_eval=run_dir / "probe_eval.nc", loss_steps=steps, loss=loss,
            persistence=persistence))
    if len(fractions) != 1 or len(totals) != 1:
        raise ValueError(f"{round_dir}: runs disagree on probe fraction {sorted(fractions)} or "
                         f"budget {sorted(totals)}")
    return ExhaustiveRound(round=str(plan["round"]), objective=objective,
                           probe_fraction=fractions.pop(), total_steps=totals.pop(), runs=runs,
                           sigma_factor=factors.pop() if len(factors) == 1 else 1.0)


def _identity(training_dir: Path, planned: str) -> str:
    """The training a run really trained on: a training planned before a block winner was
    known may turn out identical to one already trained, and is then copied from it
    (``identity.json``: its ``identity`` is the source's); copies count once."""
    for stage in ("final", "probe"):
        f = training_dir / stage / "identity.json"
        if f.exists():
            return str(read_json(f).get("identity") or planned)
    return planned


# ------------------------------------------------------------------------------------- policies


def no_stopping(rnd: ExhaustiveRound) -> Outcome:
    return Outcome("no stopping", "-", {r.name: 1.0 for r in rnd.runs}, {})


def sigma_rule(rnd: ExhaustiveRound, sigma_factor: float | None = None) -> Outcome:
    """The workflow's decide step at the round's probe fraction (enabled), on the probe evals."""
    factor = rnd.sigma_factor if sigma_factor is None else sigma_factor
    base_evals = [r.probe_eval for r in rnd.runs if r.baseline]
    if any(p is None for p in base_evals) or any(r.probe_eval is None for r in rnd.runs):
        raise ValueError("the sigma rule replays probe eval files; this round has none")
    reference = baseline_reference(base_evals, rnd.objective)
    frac, seen = {}, {}
    for r in rnd.runs:
        d = decide(r.name, r.baseline, r.probe_eval, reference, rnd.objective, factor,
                   rnd.probe_fraction, enabled=True)
        frac[r.name] = 1.0 if d["continue"] else rnd.probe_fraction
        if not d["continue"]:
            seen[r.name] = r.probe_score
    label = "sigma rule" + ("" if factor == rnd.sigma_factor else f" ({factor:g} sigma)")
    return Outcome(label, "probe small eval", frac, seen)


def sigma_band_rule(rnd: ExhaustiveRound, k: int = 2, sigma_factor: float | None = None
                    ) -> Outcome:
    """A proposed change of the sigma rule, replayed: the baseline replicates stop at the probe
    (their probe scores are all sigma needs; the first baseline still trains to the end), and a
    run continues only if it is sigma_factor * sigma better than the baseline mean (the rule
    as it is) *and* within sigma_factor * sigma of the k-th best probe score of the round, so
    only runs that can still reach the promoted top-k train on. It needs every probe score of
    the round before deciding (a barrier at the probe point)."""
    factor = rnd.sigma_factor if sigma_factor is None else sigma_factor
    base_evals = [r.probe_eval for r in rnd.runs if r.baseline]
    reference = baseline_reference(base_evals, rnd.objective)
    mean, sigma = float(reference["mean"]), float(reference["sigma"])
    probes = sorted(r.probe_score for r in rnd.runs
                    if not r.replicate and math.isfinite(r.probe_score))
    kth = probes[min(k, len(probes)) - 1] if probes else math.inf
    frac, seen = {}, {}
    for r in rnd.runs:
        if r.baseline and not r.replicate:
            keep = True
        elif r.replicate or not math.isfinite(r.probe_score) or not math.isfinite(sigma):
            keep = not r.replicate and not math.isfinite(sigma)
        else:
            keep = (mean - r.probe_score >= factor * sigma
                    and r.probe_score <= kth + factor * sigma)
        frac[r.name] = 1.0 if keep else rnd.probe_fraction
        if not keep:
            seen[r.name] = r.probe_score
    return Outcome(f"sigma rule + top-{k} band (proposed)", "probe small eval", frac, seen)


def sigma_rule_replicates_stop(rnd: ExhaustiveRound) -> Outcome:
    """The sigma rule as it is, except that the baseline replicates beyond the first stop at
    the probe (a proposed change: sigma needs their probe scores only)."""
    out = sigma_rule(rnd)
    for r in rnd.runs:
        if r.replicate:
            out.stop_fraction[r.name] = rnd.probe_fraction
            out.last_seen[r.name] = r.probe_score
    out.policy = "sigma rule, replicates stop (proposed)"
    return out


def optuna_policy(rnd: ExhaustiveRound, label: str, make_pruner: Callable[[ExhaustiveRound], Any],
                  feed: str, order: Sequence[int] | None = None, report_every: int = 10
                  ) -> Outcome:
    """Replay one Optuna pruner: each run is a trial, asked and told in ``order`` (default: the
    round's run order); its intermediate values are the probe small-eval score at the probe step
    (``feed="probe"``) or the training loss averaged over every ``report_every`` steps
    (``feed="loss"``); a pruned trial stops at the step it was pruned."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", pruner=make_pruner(rnd),
                                sampler=optuna.samplers.RandomSampler(seed=0))
    frac, seen = {}, {}
    runs = [rnd.runs[i] for i in (order if order is not None else range(len(rnd.runs)))]
    for r in runs:
        trial = study.ask()
        stopped_at = None
        for step, value in _curve(rnd, r, feed, report_every):
            trial.report(value, step)
            if trial.should_prune():
                stopped_at, seen[r.name] = step, value
                break
        if stopped_at is None:
            study.tell(trial, r.final_score if math.isfinite(r.final_score) else None,
                       state=TrialState.COMPLETE if math.isfinite(r.final_score)
                       else TrialState.FAIL)
            frac[r.name] = 1.0
        else:
            study.tell(trial, state=TrialState.PRUNED)
            frac[r.name] = stopped_at / rnd.total_steps
    names = {"probe": "probe small eval", "loss": f"training loss ({report_every}-step means)",
             "loss_ratio": f"training loss ÷ persistence ({report_every}-step means)"}
    return Outcome(label, names[feed], frac, seen)


def _curve(rnd: ExhaustiveRound, r: RunCurve, feed: str, every: int) -> list[tuple[int, float]]:
    if feed == "probe":
        return [(rnd.probe_step, r.probe_score)] if math.isfinite(r.probe_score) else []
    if feed not in ("loss", "loss_ratio"):
        raise ValueError(f"unknown feed {feed!r}; allowed: probe, loss, loss_ratio")
    out = []
    for end in range(every, rnd.total_steps, every):  # the last report is the end itself
        sel = (r.loss_steps > end - every) & (r.loss_steps <= end)
        vals = r.loss[sel]
        if feed == "loss_ratio":
            vals = np.array([vals.mean() / r.persistence[sel].mean()]) if vals.size else vals
        if vals.size and np.all(np.isfinite(vals)):
            out.append((end, float(vals.mean())))
        elif vals.size:
            out.append((end, math.inf))
    return out


# ------------------------------------------------------------------------------------- scoring


def score_outcome(rnd: ExhaustiveRound, out: Outcome, k: int = 2) -> Outcome:
    """Fill in compute, winner, regret, Kendall tau and top-k agreement of one replay."""
    from scipy.stats import kendalltau

    trainings = rnd.trainings
    out.compute = sum(max(out.stop_fraction[n] for n in runs) for runs in trainings.values()
                      ) / len(trainings)
    out.stopped = [r.name for r in rnd.runs if out.stop_fraction[r.name] < 1.0]
    by_name = {r.name: r for r in rnd.runs}
    eligible = [r for r in rnd.runs if r.eligible and not r.replicate
                and math.isfinite(r.final_score)]
    best = min((r.final_score for r in eligible), default=math.nan)
    kept = sorted((r for r in eligible if out.stop_fraction[r.name] >= 1.0),
                  key=lambda r: (r.final_score, r.name))
    out.winner = kept[0].name if kept else None
    out.regret = kept[0].final_score - best if kept else math.inf
    exhaustive_top = [r.name for r in sorted(eligible, key=lambda r: (r.final_score, r.name))][:k]
    out.top_k_same = [r.name for r in kept[:k]] == exhaustive_top
    rankable = [r for r in rnd.runs if math.isfinite(r.final_score)]
    policy_order = ([r.name for r in sorted((r for r in rankable if r.name not in out.last_seen),
                                            key=lambda r: (r.final_score, r.name))]
                    + sorted((n for n in out.last_seen if math.isfinite(by_name[n].final_score)),
                             key=lambda n: (out.last_seen[n], n)))
    exhaustive_order = [r.name for r in sorted(rankable, key=lambda r: (r.final_score, r.name))]
    if len(rankable) >= 2:
        pos = {n: i for i, n in enumerate(policy_order)}
        tau = kendalltau([exhaustive_order.index(n) for n in exhaustive_order],
                         [pos[n] for n in exhaustive_order]).statistic
        out.tau = float(tau)
    return out


def default_policies(rnd: ExhaustiveRound, report_every: int = 10
                     ) -> list[tuple[str, Callable[[Sequence[int] | None], Outcome]]]:
    """The policies of the benchmark table: (label, replay(order) -> Outcome). Optuna's pruners
    at their defaults, plus a few settings of each to compare at equal compute."""
    import optuna.pruners as P

    probe = rnd.probe_step

    def opt(label, make, feed):
        return (label, lambda order=None: optuna_policy(rnd, label, make, feed, order,
                                                        report_every))

    return [
        ("no stopping", lambda order=None: no_stopping(rnd)),
        ("sigma rule", lambda order=None: sigma_rule(rnd)),
        ("sigma rule, replicates stop (proposed)",
         lambda order=None: sigma_rule_replicates_stop(rnd)),
        ("sigma rule + top-2 band (proposed)", lambda order=None: sigma_band_rule(rnd, 2)),
        opt("MedianPruner", lambda r: P.MedianPruner(), "probe"),
        opt("PercentilePruner(25)", lambda r: P.PercentilePruner(25.0), "probe"),
        opt("PercentilePruner(75)", lambda r: P.PercentilePruner(75.0), "probe"),
        opt("SuccessiveHalvingPruner(eta=4)",
            lambda r: P.SuccessiveHalvingPruner(min_resource=probe, reduction_factor=4), "probe"),
        opt("SuccessiveHalvingPruner(eta=2)",
            lambda r: P.SuccessiveHalvingPruner(min_resource=probe, reduction_factor=2), "probe"),
        opt("MedianPruner", lambda r: P.MedianPruner(), "loss"),
        opt("MedianPruner(warmup=probe)",
            lambda r: P.MedianPruner(n_warmup_steps=probe), "loss"),
        opt("SuccessiveHalvingPruner", lambda r: P.SuccessiveHalvingPruner(), "loss"),
        opt("MedianPruner", lambda r: P.MedianPruner(), "loss_ratio"),
        opt("MedianPruner(warmup=probe)",
            lambda r: P.MedianPruner(n_warmup_steps=probe), "loss_ratio"),
        opt("SuccessiveHalvingPruner", lambda r: P.SuccessiveHalvingPruner(), "loss_ratio"),
    ]


def replay_round(rnd: ExhaustiveRound, k: int = 2, shuffles: int = 0, seed: int = 0,
                 report_every: int = 10) -> list[dict[str, Any]]:
    """Every default policy on ``rnd`` in the round's order; with ``shuffles`` > 0 also the
    mean compute / regret / tau over that many random run orders (Optuna's pruners depend on
    the order trials finish in; the sigma rule does not)."""
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(len(rnd.runs)) for _ in range(shuffles)]
    rows = []
    for _label, replay in default_policies(rnd, report_every):
        out = score_outcome(rnd, replay(None), k)
        row = out.row()
        row["stopped_runs"] = out.stopped
        if orders:
            shuffled = [score_outcome(rnd, replay(list(o)), k) for o in orders]
            row["shuffled_compute"] = float(np.mean([s.compute for s in shuffled]))
            finite = [s.regret for s in shuffled if math.isfinite(s.regret)]
            # regret is infinite when a policy stopped every eligible run: no winner at all
            row["shuffled_regret"] = float(np.mean(finite)) if finite else math.inf
            row["shuffled_no_winner"] = 1.0 - len(finite) / len(shuffled)
            row["shuffled_zero_regret"] = float(np.mean([s.regret == 0 for s in shuffled]))
            row["shuffled_tau"] = float(np.nanmean([s.tau for s in shuffled]))
        rows.append(row)
    return rows
