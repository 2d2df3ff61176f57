"""Round config -> designs -> the round's run table, with the guardrails checked.

A round is a list of blocks. Each block sweeps a few knobs with a design; the other knobs take
the round's base values (defaults < inherited winners of earlier rounds < round `fixed`), or the
winner of an earlier block (`fixed_from_block`), or the block's own `fixed`. Identical runs in two
blocks are one run. Values that come from a winner not yet known are `Pending` until the winner
file exists; `physweep.plan.spec.build_spec` resolves them when the job runs.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from physweep.plan import designs
from physweep.plan import knobs as K
from physweep.plan.config import WorkflowConfig, normalise_knob
from physweep.plan.errors import ConfigError, UnknownRunError
from physweep.plan.sizes import effective_batch, effective_size, effective_value

# The shape every run name has (``knob~value`` pairs joined by ``_``, ``baseline_seed~N``):
# one path component, no leading dot. Used as the Snakemake wildcard constraint of {run}.
RUN_NAME_REGEX = r"[A-Za-z0-9][A-Za-z0-9_.~+-]*"
_RUN_NAME = re.compile(f"^(?:{RUN_NAME_REGEX})$")


@dataclass(frozen=True)
class Pending:
    """A knob value taken from a winner that is decided by an earlier round or block."""

    kind: str  # "round" | "block"
    name: str  # round or block name

    @property
    def source(self) -> str:
        return f"{self.kind}:{self.name}"

    def __str__(self) -> str:
        return f"<-{self.name}" if self.kind == "round" else f"<-best({self.name})"


@dataclass
class PlannedRun:
    name: str
    blocks: list[str]
    seed: int
    values: dict[str, Any]  # every knob: nominal value or Pending
    swept: dict[str, Any]  # the assignment of its first block ({} for the baseline)
    origin: dict[str, str]  # knob -> where its value comes from
    batch_tokens: int  # nominal batch_tokens of this run
    batch_rule: str | None = None
    is_baseline: bool = False

    @property
    def block(self) -> str:
        return self.blocks[0]

    @property
    def pending_sources(self) -> list[str]:
        return sorted({v.source for v in self.values.values() if isinstance(v, Pending)})


@dataclass
class Alias:
    """A block assignment identical to the winner of the block it is fixed from."""

    block: str
    swept: dict[str, Any]
    alias_of_block: str


@dataclass
class RoundPlan:
    round: str
    file: str
    title: str
    objective: str
    runs: list[PlannedRun]
    aliases: list[Alias]
    warnings: list[str]
    blocks: list[str]
    block_sources: dict[str, str | None]  # block -> earlier block it takes a winner from
    inherits: list[str]  # earlier rounds whose winners this round needs
    varied: list[str]  # knobs that take more than one value in the round
    baseline: list[str] = field(default_factory=list)
    designs: list[dict[str, Any]] = field(default_factory=list)  # per block: design_info()
    early_stop: bool = True  # false: exhaustive round, every run trains to the end

    def run(self, name: str) -> PlannedRun:
        try:
            return self._by_name[name]
        except KeyError:
            near = difflib.get_close_matches(name, list(self._by_name), n=3, cutoff=0.0)
            raise UnknownRunError(self.file, "run", f"round {self.round} has no run {name!r}",
                                  "nearest planned: " + ", ".join(near)) from None

    @cached_property
    def _by_name(self) -> dict[str, PlannedRun]:
        return {r.name: r for r in self.runs}

    def runs_of_block(self, block: str) -> list[str]:
        return [r.name for r in self.runs if block in r.blocks]


def _key(values: dict[str, Any], seed: int, batch: int) -> tuple:
    return (seed, batch) + tuple(
        (k, v.source if isinstance(v, Pending) else K.format_value(v)) for k, v in sorted(values.items())
    )


def _design_size(design: dict, n_levels: list[int]) -> int | None:
    """Runs a design will have, known before it is built (None: the design decides)."""
    kind = design["type"]
    if kind == "grid":
        return math.prod(n_levels)
    if kind == "one_at_a_time":
        return 1 + sum(n - 1 for n in n_levels)
    if kind == "list":
        return len(design.get("runs") or [])
    if kind == "fractional" and "generators" in design:
        return 2 ** sum(1 for t in design["generators"].split() if len(t.lstrip("+-")) == 1)
    runs = design.get("runs")
    return runs if isinstance(runs, int) else None


DEFAULT_MAX_RUNS = 500  # config key max_runs: the most runs a round may plan


def max_runs(wcfg: WorkflowConfig) -> int:
    return int(wcfg.config.get("max_runs", DEFAULT_MAX_RUNS))


def _max_runs_allowed(wcfg: WorkflowConfig, count: int) -> str:
    return (f"at most max_runs = {max_runs(wcfg)} runs; to allow {count}, set max_runs: {count} "
            f"(or more) in {wcfg.config_file} or pass --config max_runs={count}")


def _design_rows(wcfg: WorkflowConfig, block: dict, names: list[str], levels: list[list[Any]],
                 file: str, where: str, tight: bool, base_index: list[int]
                 ) -> tuple[list[tuple[int, ...]], dict[str, Any]]:
    design = block["tight"] if tight and "tight" in block else block["design"]
    key = f"{where}.tight" if design is block.get("tight") else f"{where}.design"
    n_levels = [len(v) for v in levels]
    kind = design["type"]
    planned = _design_size(design, n_levels)
    if planned is not None and planned > max_runs(wcfg):
        raise ConfigError(file, key, f"the {kind} design of block '{block['name']}' has {planned} "
                          f"runs, more than max_runs", _max_runs_allowed(wcfg, planned))
    generators = None
    try:
        if kind == "grid":
            rows = designs.grid(n_levels)
        elif kind == "fractional":
            if "generators" in design:
                generators = design["generators"]
                rows = designs.fractional_2level(n_levels, generators)
            elif not isinstance(design.get("runs"), int):
                raise ConfigError(file, f"{key}.runs", "a fractional design needs `runs` "
                                  "(balanced fraction) or `generators` (2-level)",
                                  f"runs in {designs.balanced_sizes(n_levels)}")
            elif all(n == 2 for n in n_levels) and design["runs"] != designs.size(n_levels):
                generators = designs.regular_generators(len(n_levels), design["runs"])
                rows = designs.fractional_2level(n_levels, generators)
            else:
                rows = designs.balanced_fraction(n_levels, design["runs"])
        elif kind == "lhs":
            if not isinstance(design.get("runs"), int):
                raise ConfigError(file, f"{key}.runs", "an lhs design needs `runs`",
                                  "a multiple of every knob's number of levels")
            rows = designs.latin_hypercube(n_levels, design["runs"], design.get("seed", 0))
        elif kind == "one_at_a_time":
            rows = designs.one_at_a_time(n_levels, base_index)
        else:
            raise ConfigError(file, f"{key}.type", f"unsupported design {kind!r}")
    except designs.DesignError as exc:
        allowed = ", ".join(map(str, exc.allowed)) if exc.allowed else "none found for these levels"
        raise ConfigError(file, f"{key}.runs", str(exc), f"runs in [{allowed}]") from exc
    return rows, design_info(block["name"], key, kind, names, n_levels, rows, generators)


def design_info(block: str, key: str, kind: str, names: list[str], n_levels: list[int],
                rows: list[tuple[int, ...]], generators: str | None = None) -> dict[str, Any]:
    """JSON-able description of a block's design; fractions add their resolution and aliases
    (shown by `physweep plan`, stored in plan.json for the report's effects section)."""
    full = math.prod(n_levels)
    info: dict[str, Any] = {"block": block, "key": key, "type": kind, "runs": len(rows),
                            "full": full, "levels": dict(zip(names, n_levels, strict=True))}
    if kind != "fractional":
        return info
    if len(rows) == full:
        info.update(resolution="full", regular=True, aliases=[], aliases_2fi=[])
        return info
    al = designs.alias_structure(rows, n_levels, generators)

    def fi(pair: tuple[int, int]) -> str:
        return f"{names[pair[0]]} x {names[pair[1]]}"

    aliases = []
    for i, name in enumerate(names):
        fully = [fi(p) for m, p, f in al.main_2fi if m == i and f]
        partly = [fi(p) for m, p, f in al.main_2fi if m == i and not f]
        if fully:
            aliases.append(" = ".join([name, *fully]))
        if partly:
            aliases.append(f"{name} partly aliased with {', '.join(partly)}")
    info.update(resolution=al.resolution, regular=al.regular, aliases=aliases,
                aliases_2fi=[f"{fi(p)} = {fi(q)}" for p, q in al.fi_fi])
    if generators is not None:
        tokens = [t.lstrip("+-") for t in generators.split()]
        main = [i for i, t in enumerate(tokens) if len(t) == 1]
        info["generators"] = {names[i]: "*".join(names[main[ord(ch) - 97]] for ch in t)
                              for i, t in enumerate(tokens) if len(t) > 1}
        info["defining_relation"] = ["*".join(names[j] for j in w) for w in al.words]
    return info


def _block_assignments(wcfg: WorkflowConfig, block: dict, base: dict[str, Any], file: str,
                       where: str, tight: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    if block["design"]["type"] == "list" and not (tight and "tight" in block):
        runs = block["design"]["runs"]
        if len(runs) > max_runs(wcfg):
            raise ConfigError(file, f"{where}.design.runs", f"the list design of block "
                              f"'{block['name']}' has {len(runs)} runs, more than max_runs",
                              _max_runs_allowed(wcfg, len(runs)))
        info = {"block": block["name"], "key": f"{where}.design", "type": "list",
                "runs": len(runs)}
        return [{k: normalise_knob(k, v) for k, v in run.items()} for run in runs], info
    names = list(block["knobs"])
    levels = [[normalise_knob(k, v) for v in block["knobs"][k]] for k in names]
    base_index = []
    for k, lv in zip(names, levels, strict=True):
        idx = [i for i, v in enumerate(lv) if K.same_value(v, base.get(k))]
        base_index.append(idx[0] if idx else 0)
    rows, info = _design_rows(wcfg, block, names, levels, file, where, tight, base_index)
    return [{k: levels[j][row[j]] for j, k in enumerate(names)} for row in rows], info


def plan_round(wcfg: WorkflowConfig, name: str, winners: dict[str, dict[str, Any]] | None = None
               ) -> RoundPlan:
    """Plan round ``name``. ``winners`` maps a source ("round:round_a", "block:optimizer") to
    its winner's knob values when already known (shown in the table; the DAG stays symbolic)."""
    if name in wcfg.broken:
        raise wcfg.broken[name]
    if name not in wcfg.rounds:
        raise ConfigError(wcfg.config_file, "round", f"unknown round '{name}'",
                          known_rounds(wcfg))
    winners = winners or {}
    rnd, file = wcfg.rounds[name], str(wcfg.round_files[name])
    cfg = wcfg.config
    tight = bool(cfg.get("tight_designs", False))

    base: dict[str, Any] = dict(cfg["knobs"])
    origin: dict[str, str] = {k: "default" for k in base}
    for inh in rnd.get("inherit", []):
        src = Pending("round", inh["round"])
        for k in inh["knobs"]:
            known = winners.get(src.source)
            base[k] = normalise_knob(k, known[k]) if known and k in known else src
            origin[k] = f"winner of {inh['round']}"
    for k, v in (rnd.get("fixed") or {}).items():
        base[k], origin[k] = normalise_knob(k, v), "round fixed"

    batch = int(cfg["compute"]["batch_tokens"])
    runs: list[PlannedRun] = []
    by_key: dict[tuple, PlannedRun] = {}
    aliases: list[Alias] = []
    block_values: dict[str, list[dict[str, Any]]] = {}
    block_sources: dict[str, str | None] = {}
    names: set[str] = set()
    design_infos: list[dict[str, Any]] = []

    n_seeds = int(cfg["early_stop"]["baseline_seeds"])
    for seed in range(n_seeds):
        run = PlannedRun(
            name="baseline" if seed == 0 else f"baseline_seed~{seed}", blocks=["baseline"],
            seed=seed, values=dict(base), swept={}, origin=dict(origin), batch_tokens=batch,
            is_baseline=True,
        )
        runs.append(run)
        names.add(run.name)
        by_key[_key(run.values, seed, batch)] = run

    for b, block in enumerate(rnd["blocks"]):
        where, bname = f"blocks[{b}]", block["name"]
        bbase, borigin = dict(base), dict(origin)
        ffb = block.get("fixed_from_block")
        block_sources[bname] = ffb["block"] if ffb else None
        if ffb:
            src = Pending("block", ffb["block"])
            known = winners.get(src.source)
            for k in ffb["knobs"]:
                bbase[k] = normalise_knob(k, known[k]) if known and k in known else src
                borigin[k] = f"best of block {ffb['block']}"
        for k, v in (block.get("fixed") or {}).items():
            bbase[k], borigin[k] = normalise_knob(k, v), "block fixed"
        comp = block.get("compute") or {}
        rule = comp.get("batch_tokens")
        if rule and "lr_scaling" not in comp:
            raise ConfigError(file, f"{where}.compute", "batch_tokens changed without the LR "
                              "rule", "add `lr_scaling: linear` (the playbook's rule)")
        if rule and "batch_tokens" not in rnd.get("declares", []):
            raise ConfigError(file, "declares", f"block '{bname}' changes batch_tokens but the "
                              "round does not declare it", "declares: [batch_tokens]")
        values_list = []
        assignments, info = _block_assignments(wcfg, block, bbase, file, where, tight)
        design_infos.append(info)
        for assignment in assignments:
            values = dict(bbase)
            values.update(assignment)
            run_origin = dict(borigin)
            run_origin.update({k: "swept" for k in assignment})
            run_batch, rule_text = batch, None
            if rule:
                knob = rule["scale_with"]
                if knob not in assignment:
                    raise ConfigError(file, f"{where}.compute.batch_tokens.scale_with",
                                      f"'{knob}' is not swept by block '{bname}'",
                                      ", ".join(assignment))
                ratio = assignment[knob] / cfg["knobs"][knob]
                run_batch = round(batch / ratio) if rule["rule"] == "inverse" else round(batch * ratio)
                rule_text = f"batch_tokens {rule['rule']} in {knob}"
            values_list.append(values)
            if ffb and _is_alias(values, ffb, block_values.get(ffb["block"], [])):
                aliases.append(Alias(bname, assignment, ffb["block"]))
                continue
            key = _key(values, 0, run_batch)
            if key in by_key:
                if bname not in by_key[key].blocks:
                    by_key[key].blocks.append(bname)
                continue
            run_name = "_".join(f"{k}~{K.format_value(v)}" for k, v in assignment.items())
            if run_name in names:
                run_name = f"{run_name}_b~{bname}"
            if not _RUN_NAME.match(run_name):
                raise ConfigError(file, f"{where}.knobs",
                                  f"run name {run_name!r} is not a plain file name: knob values "
                                  f"may use letters, digits and . + - only")
            names.add(run_name)
            run = PlannedRun(run_name, [bname], 0, values, dict(assignment), run_origin,
                             run_batch, rule_text)
            runs.append(run)
            by_key[key] = run
        block_values[bname] = values_list

    if len(runs) > max_runs(wcfg):
        per_block = ", ".join(f"{b}: {sum(1 for r in runs if r.block == b)}"
                              for b in ["baseline", *block_sources])
        raise ConfigError(file, "blocks", f"round {name} plans {len(runs)} runs ({per_block}), "
                          "more than max_runs", _max_runs_allowed(wcfg, len(runs)))
    _check_sizes(wcfg, runs, rnd, file)
    varied = _varied(runs)
    warnings = _guardrails(rnd, file, varied, runs) + _probe_twins(wcfg, runs)
    return RoundPlan(
        round=name, file=file, title=rnd.get("title", name), objective=rnd["objective"],
        runs=runs, aliases=aliases, warnings=warnings, blocks=[b["name"] for b in rnd["blocks"]],
        block_sources=block_sources, inherits=[i["round"] for i in rnd.get("inherit", [])],
        varied=varied, baseline=[r.name for r in runs if r.is_baseline], designs=design_infos,
        early_stop=early_stop_enabled(wcfg.config, rnd),
    )


def early_stop_enabled(config: dict[str, Any], rnd: dict[str, Any]) -> bool:
    """Whether the early-stop rule may stop runs of this round: the round's
    ``early_stop.enabled`` when it sets one, else the config's (default true)."""
    own = (rnd.get("early_stop") or {}).get("enabled")
    if own is not None:
        return bool(own)
    return bool(config["early_stop"].get("enabled", True))


def known_rounds(wcfg: WorkflowConfig) -> str:
    """The round names a target or `physweep plan` may use (broken round files marked)."""
    return ", ".join([*sorted(wcfg.rounds), *(f"{n} (broken file)" for n in sorted(wcfg.broken))]
                     ) or "none"


def _is_alias(values: dict[str, Any], ffb: dict, source_values: list[dict[str, Any]]) -> bool:
    """True when this run equals whichever run of the source block wins: every knob that is not
    taken from the winner has the value that all of the source block's runs share."""
    if not source_values:
        return False
    for k, v in values.items():
        if k in ffb["knobs"]:
            continue
        if isinstance(v, Pending):
            if any(sv.get(k) != v for sv in source_values):
                return False
        elif not all(not isinstance(sv[k], Pending) and K.same_value(sv[k], v)
                     for sv in source_values):
            return False
    return True


def _check_sizes(wcfg: WorkflowConfig, runs: list[PlannedRun], rnd: dict, file: str) -> None:
    """Every concrete size of every run must map to an effective size in the preset, and the
    full evaluation must roll out to at least twice every run's (effective) training horizon.
    A size the preset cannot map is reported with the preset key and where the round sets it."""
    pfile = str(wcfg.preset_file)
    full_horizon = int(wcfg.preset["eval"]["full"].get("horizon", 0))
    for r in runs:
        for k in K.SIZE_KNOBS:
            if not isinstance(r.values[k], Pending):
                try:
                    effective_value(wcfg.preset, k, r.values[k], preset_file=pfile)
                except ConfigError as exc:
                    raise ConfigError(exc.file, exc.key, f"{exc.problem}, used by "
                                      f"{_where_set(wcfg, rnd, file, r, k)}", exc.allowed) from None
        try:
            effective_batch(wcfg.preset, r.batch_tokens, pfile)
        except ConfigError as exc:
            raise ConfigError(exc.file, exc.key, f"{exc.problem}, used by run '{r.name}' of block "
                              f"'{r.block}' ({file}: batch_tokens {r.batch_tokens}"
                              f"{', ' + r.batch_rule if r.batch_rule else ''})", exc.allowed) from None
        if not isinstance(r.values["max_horizon"], Pending):
            h = effective_value(wcfg.preset, "max_horizon", r.values["max_horizon"],
                                preset_file=pfile)
            if full_horizon < 2 * h:
                raise ConfigError(pfile, "eval.full.horizon",
                                  f"full-eval horizon {full_horizon} is shorter than twice the "
                                  f"training horizon {h} of run '{r.name}' (max_horizon "
                                  f"{r.values['max_horizon']})", f"an integer >= {2 * h}")


def _where_set(wcfg: WorkflowConfig, rnd: dict, file: str, run: PlannedRun, knob: str) -> str:
    """Where ``rnd`` sets ``knob`` for ``run``: "run 'model_dim~100' of block 'capacity' of
    round_c.yaml (key blocks[0].knobs.model_dim)"."""
    index = {b["name"]: i for i, b in enumerate(rnd["blocks"])}
    origin = run.origin.get(knob, "")
    blocks = [b for b in run.blocks if b in index]
    b = blocks[0] if blocks else None
    where = f"blocks[{index[b]}]" if b is not None else None
    if origin == "swept" and where is not None:
        design = rnd["blocks"][index[b]]["design"]
        key = f"{where}.design.runs" if design["type"] == "list" else f"{where}.knobs.{knob}"
    elif origin == "block fixed" and where is not None:
        key = f"{where}.fixed.{knob}"
    elif origin == "round fixed":
        key = f"fixed.{knob}"
    elif origin.startswith(("winner", "best")):
        key = f"{knob} ({origin})"
    else:
        return (f"run '{run.name}' of block '{run.block}' of {file} (the default knobs.{knob} "
                f"of {wcfg.config_file})")
    return f"run '{run.name}' of block '{run.block}' of {file} (key {key})"


CURRICULUM_KNOBS = ("max_horizon", "freeze_bottom_layers_on_expand")


def _probe_twins(wcfg: WorkflowConfig, runs: list[PlannedRun]) -> list[str]:
    """Runs that differ only in curriculum knobs whose schedules (horizon, freezing) agree up to
    the probe step train identically until then: the early-stop rule decides them on identical
    probes. One warning per such group."""
    from physweep.train.curriculum import Curriculum

    cfg, preset, pfile = wcfg.config, wcfg.preset, str(wcfg.preset_file)
    stages = int(preset["train"].get("curriculum_stages", 3))  # 3: TrainConfig's default
    fraction = float(cfg["early_stop"]["probe_fraction"])
    ref = effective_batch(preset, int(cfg["compute"]["ref_batch_tokens"]), pfile)
    budget = effective_size(preset, "budget_steps", int(cfg["compute"]["budget_steps"]), pfile)
    groups: dict[tuple, list[str]] = {}
    for r in runs:
        if any(isinstance(r.values[k], Pending) for k in CURRICULUM_KNOBS):
            continue
        total = budget * ref // effective_batch(preset, r.batch_tokens, pfile)
        cur = Curriculum(effective_value(preset, "max_horizon", r.values["max_horizon"],
                                         preset_file=pfile),
                         stages, total, bool(r.values["freeze_bottom_layers_on_expand"]))
        probe = round(fraction * total)
        starts = sorted({-(-k * total // stages) for k in range(stages)})  # first step per stage
        schedule = tuple((t, cur.horizon(t), cur.frozen(t)) for t in starts if t < probe)
        rest = tuple((k, str(v)) for k, v in sorted(r.values.items()) if k not in CURRICULUM_KNOBS)
        groups.setdefault((probe, total, rest, r.seed, schedule), []).append(r.name)
    return [f"runs {', '.join(names)} train identically up to the probe point (step {probe} of "
            f"{total}: the same curriculum horizons and freezing so far), so the early-stop rule "
            f"decides them on identical probes; fewer curriculum_stages or a later "
            f"probe_fraction separates them"
            for (probe, total, *_), names in groups.items() if len(names) > 1]


def _varied(runs: list[PlannedRun]) -> list[str]:
    out = []
    for k in K.KNOBS:
        texts = {str(r.values[k]) if isinstance(r.values[k], Pending)
                 else K.format_value(r.values[k]) for r in runs}
        swept = any(k in r.swept for r in runs)
        if swept and len(texts) > 1:
            out.append(k)
    return out


def _guardrails(rnd: dict, file: str, varied: list[str], runs: list[PlannedRun]) -> list[str]:
    toggles = [k for k in K.ARCH_TOGGLES if k in varied]
    if len(toggles) > 1:
        raise ConfigError(file, "blocks", f"several architectural toggles varied together: "
                          f"{toggles}", f"vary at most one of {', '.join(K.ARCH_TOGGLES)} per round")
    if all(k in varied for k in K.CAPACITY_AXES):
        raise ConfigError(file, "blocks", "depth and model_dim varied in the same round",
                          "change one capacity axis: model_dim OR depth")
    if "max_horizon" in varied and "horizon" not in rnd.get("declares", []):
        raise ConfigError(file, "declares", "max_horizon varies but the round does not declare "
                          "the horizon change", "declares: [horizon]")
    warnings = []
    for (a, b), note in K.INTERACTIONS.items():
        if a in varied and b in varied:
            warnings.append(f"interaction {note}")
    batches = {r.batch_tokens for r in runs}
    if len(batches) > 1:
        warnings.append(
            "batch_tokens changes across this round (declared): LR rescaled linearly for "
            + ", ".join(r.name for r in runs if r.batch_rule)
        )
    return list(dict.fromkeys(warnings))
