"""What the Snakemake rules ask of the plan: run lists, templates, winner inputs, constraints.

Kept in the package (unit-tested) so `rules/common.smk` stays a list of thin input functions.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from physweep.plan.config import WorkflowConfig
from physweep.plan.errors import ConfigErrors
from physweep.plan.round import RUN_NAME_REGEX, RoundPlan, plan_round
from physweep.plan.spec import template, training_key, training_template, winner_knobs


def round_winners_path(results: str, round_name: str) -> str:
    return f"{results}/{round_name}/winners.yaml"


def block_winner_path(results: str, round_name: str, block: str) -> str:
    return f"{results}/{round_name}/blocks/{block}/winner.yaml"


def source_path(results: str, round_name: str, source: str) -> str:
    """Winner file of a pending source ("round:round_a" or "block:optimizer")."""
    kind, _, name = source.partition(":")
    if kind == "round":
        return round_winners_path(results, name)
    return block_winner_path(results, round_name, name)


def training_dir(results: str, round_name: str, training: str) -> str:
    """A shared training: probe/ and final/ checkpoints and training logs."""
    return f"{results}/{round_name}/trainings/{training}"


def round_trainings(wcfg: WorkflowConfig, plan: RoundPlan) -> dict[str, list[str]]:
    """The round's distinct trainings (``spec.training_key``) -> the runs that share each, in
    plan order."""
    out: dict[str, list[str]] = {}
    for r in plan.runs:
        out.setdefault(training_key(template(wcfg, plan, r)), []).append(r.name)
    return out


def rerun_hint(results: str = "results") -> str:
    """Template ({round}, {run}, {training}) of the command that retrains one run and what
    depends on it: its training (shared by the runs that differ from it only in evaluation-time
    knobs, which are redone too; runs/<run>/training.json names it)."""
    return (f"snakemake --cores 2 {{round}} --forcerun "
            f"{results}/{{round}}/trainings/{{training}}/probe/checkpoint.pt")


def known_winners(wcfg: WorkflowConfig, round_name: str, workdir: Path) -> dict[str, dict]:
    """Winner values already on disk for the round's sources (for display only)."""
    out = {}
    rnd = wcfg.rounds[round_name]
    results = Path(workdir) / wcfg.results_dir
    for inh in rnd.get("inherit", []):
        p = Path(round_winners_path(str(results), inh["round"]))
        if p.exists():
            out[f"round:{inh['round']}"] = winner_knobs(p)
    for b in rnd["blocks"]:
        p = Path(block_winner_path(str(results), round_name, b["name"]))
        if p.exists():
            out[f"block:{b['name']}"] = winner_knobs(p)
    return out


class Workflow:
    """All rounds planned once at parse time; answers the rules' questions.

    Every sound round is planned. Round files set aside by ``load_workflow_config`` (broken, or
    inheriting from a broken one) are kept in ``broken``: the workflow warns about them and
    refuses them only when they are asked for, so a broken round file does not stop an
    unrelated round (the cross-round index covers the planned rounds)."""

    def __init__(self, wcfg: WorkflowConfig):
        self.wcfg = wcfg
        self.results = wcfg.results_dir
        # round files set aside by load_workflow_config: refused only when asked for
        self.broken: dict[str, ConfigErrors] = dict(wcfg.broken)
        self.plans: dict[str, RoundPlan] = {name: plan_round(wcfg, name) for name in wcfg.rounds}
        self._trainings = {name: round_trainings(wcfg, plan) for name, plan in self.plans.items()}
        self._training_of = {name: {run: key for key, runs in t.items() for run in runs}
                             for name, t in self._trainings.items()}

    @property
    def rounds(self) -> list[str]:
        return list(self.plans)

    @property
    def dataset(self) -> str:
        return self.wcfg.preset["data"]["name"]

    def run_names(self, round_name: str) -> list[str]:
        return [r.name for r in self.plans[round_name].runs]

    def baseline_runs(self, round_name: str) -> list[str]:
        return list(self.plans[round_name].baseline)

    def block_runs(self, round_name: str, block: str) -> list[str]:
        return self.plans[round_name].runs_of_block(block)

    def run_template(self, round_name: str, run: str) -> dict[str, Any]:
        plan = self.plans[round_name]
        return template(self.wcfg, plan, plan.run(run))

    def trainings(self, round_name: str) -> dict[str, list[str]]:
        """Distinct trainings of the round -> the runs that share each."""
        return self._trainings[round_name]

    def training_of(self, round_name: str, run: str) -> str:
        """The training a run's checkpoints come from (its key)."""
        return self._training_of[round_name][run]

    def training_runs(self, round_name: str, training: str) -> list[str]:
        return self._trainings[round_name][training]

    def training_template(self, round_name: str, training: str) -> dict[str, Any]:
        """What a training job trains: the first run's template reduced to what training reads
        (the same for every run on it; a run joining or leaving changes no param)."""
        return training_template(self.run_template(round_name, self.training_runs(
            round_name, training)[0]))

    def training_winner_inputs(self, round_name: str, training: str) -> dict[str, str]:
        """Winner files the training's values depend on (evaluation-only values need none)."""
        nominal = self.training_template(round_name, training)["nominal"]
        sources = [v["pending"] for v in nominal.values() if isinstance(v, dict) and "pending" in v]
        return {s: source_path(self.results, round_name, s) for s in dict.fromkeys(sources)}

    def winner_inputs(self, round_name: str, run: str) -> dict[str, str]:
        """Winner files this run's values depend on, keyed by source."""
        r = self.plans[round_name].run(run)
        return {s: source_path(self.results, round_name, s) for s in r.pending_sources}

    def round_dependencies(self, round_name: str) -> list[str]:
        return [round_winners_path(self.results, r) for r in self.plans[round_name].inherits]

    @property
    def run_regex(self) -> str:
        """Wildcard constraint: the shape of a run name (``knob~value`` pairs joined by ``_``).

        A shape, not the alternation of every planned name: Snakemake embeds the constraint in
        every file pattern, and a 1,000-name alternation made each pattern tens of kB long
        (dry runs 2-3x slower). Names of the right shape that the plan does not know are
        refused by the input functions (``RoundPlan.run`` raises UnknownRunError, "round X has
        no run Y" with the nearest planned names; ``rules/common.smk`` prints it as one line).
        """
        return RUN_NAME_REGEX

    @property
    def round_regex(self) -> str:
        return "|".join(re.escape(n) for n in self.plans)

    @property
    def block_regex(self) -> str:
        names = sorted({b for p in self.plans.values() for b in p.blocks}, key=len, reverse=True)
        return "|".join(re.escape(n) for n in names)
