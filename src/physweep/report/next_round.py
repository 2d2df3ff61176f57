"""`physweep next <round>`: propose the next round from a finished round's effects.

Reads ``results/<round>/ranking.csv``, ``winners.yaml`` and the runs' ``decision.json`` and fits
the same main effects and interactions as the round's report (:mod:`physweep.report.effects`,
response: the objective at the probe point, :func:`physweep.report.round.effects_response`).
The proposal keeps the winner's values (inherited from the round's ``winners.yaml``) and sweeps,
in one block, a narrower set of levels around the best level of every knob whose main effect
(or an interaction it is part of) is significant at ``alpha``; knobs without a significant
effect are dropped (kept at the winner's value). Narrower levels of a numeric knob: the best
level and the midpoints towards its neighbouring levels (geometric midpoints on geometrically
spaced levels such as the LR's), half a level step beyond the swept range when the best level
is at its edge; sizes only take nominal values the preset maps; a switch, or a knob with nothing
to put between its levels, stays at the winner's value. More than three knobs: a balanced
fractional design instead of the grid. The swept knobs are a subset of the round's, so the
playbook's guardrails on what not to vary together (:mod:`physweep.plan.knobs`: one
architectural toggle, one capacity axis) hold as they held for the round; a horizon change is
declared, a batch_tokens rule of the knob's block is kept, the playbook's interaction notes are
listed, and the file is validated by the planner (``load_workflow_config`` / ``plan_round``,
which enforces the guardrails) before it is written.
"""

from __future__ import annotations

import copy
import math
import shutil
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from physweep.io import load_yaml
from physweep.plan import designs
from physweep.plan import knobs as K
from physweep.plan.config import WorkflowConfig, load_workflow_config, normalise_knob
from physweep.plan.errors import ConfigError, ConfigErrors
from physweep.plan.round import RoundPlan, plan_round
from physweep.plan.schema import load_schema
from physweep.plan.sizes import effective_size

ALPHA = 0.05
BLOCK = "narrow"


class NotFinished(RuntimeError):
    """The round has no ranking / winners yet."""


class NothingToNarrow(RuntimeError):
    """No knob with a significant effect could be swept more narrowly."""

    def __init__(self, message: str, reasoning: list[str]):
        super().__init__(message)
        self.reasoning = reasoning


@dataclass
class Proposal:
    name: str
    source: str
    text: str  # the round file (YAML, reasoning as comments)
    round: dict[str, Any]
    reasoning: list[str]
    plan: RoundPlan
    swept: dict[str, list[Any]]
    inherited: list[str]
    warnings: list[str] = field(default_factory=list)


def round_effects(results: Path, round_name: str):
    """The round's effects fit, as its report computes it: (EffectsResult, ranking, winners)."""
    from physweep.report.effects import estimate_effects
    from physweep.report.model import load_round
    from physweep.report.round import effects_response

    rdir = Path(results) / round_name
    missing = [p.name for p in (rdir / "ranking.csv", rdir / "winners.yaml") if not p.exists()]
    if missing:
        raise NotFinished(
            f"round {round_name} has not finished: {' and '.join(missing)} missing in {rdir} "
            f"(`physweep status {round_name}` shows where it is; the rank rule writes both "
            "at the end of the round)")
    winners = load_yaml((rdir / "winners.yaml").read_text()) or {}
    names = [str(r) for r in pd.read_csv(rdir / "ranking.csv", dtype={"run": str})["run"]]
    decisions = {r: p for r in names if (p := rdir / "runs" / r / "decision.json").exists()}
    res = load_round(round_name, rdir / "ranking.csv", decisions, {}, {}, None, None)
    df = res.ranking
    knob_cols = [c for c in df.columns if c.startswith("knob.")]
    runs = df[knob_cols].rename(columns=lambda c: c[5:]).copy()
    runs["response"], _ = effects_response(res)
    eff = estimate_effects(runs, list(runs.columns[:-1]), "response")
    return eff, df, winners


def _fmt(v: Any) -> str:
    return K.format_value(v) if not isinstance(v, str) else v


def _round_sig(x: float, digits: int) -> float:
    if x == 0:
        return 0.0
    return float(f"{x:.{digits - 1}e}")


def _in_schema(spec: dict[str, Any], v: Any) -> bool:
    if "minimum" in spec and v < spec["minimum"]:
        return False
    if "maximum" in spec and v > spec["maximum"]:
        return False
    if "exclusiveMinimum" in spec and v <= spec["exclusiveMinimum"]:
        return False
    return not ("exclusiveMaximum" in spec and v >= spec["exclusiveMaximum"])


def narrow_levels(knob: str, levels: list[Any], best: Any, preset: dict[str, Any],
                  preset_file: str = "preset") -> tuple[list[Any] | None, str]:
    """Narrower levels around ``best`` of a swept knob, or (None, why not)."""
    spec = load_schema("knobs")["properties"].get(knob, {})
    kind = spec.get("type")
    if kind not in ("number", "integer") or isinstance(best, bool):
        return None, "a switch: nothing between its levels"
    lv = sorted({float(v) for v in levels})
    b = float(best)
    if b not in lv:
        return None, f"best level {_fmt(best)} is not one of the swept levels"
    i = lv.index(b)
    ratios = [hi / lo for lo, hi in zip(lv, lv[1:], strict=False) if lo > 0]
    geometric = all(v > 0 for v in lv) and (knob == "lr" or (
        len(ratios) >= 2 and max(ratios) / min(ratios) < 1.15 and min(ratios) > 1.3))

    def mid(a: float, c: float) -> float:
        return math.sqrt(a * c) if geometric else (a + c) / 2

    def beyond(a: float, c: float) -> float:  # half a step from c away from a
        return c * math.sqrt(c / a) if geometric else c + (c - a) / 2

    lower = mid(lv[i - 1], b) if i > 0 else (beyond(lv[1], b) if len(lv) > 1 else None)
    upper = mid(b, lv[i + 1]) if i < len(lv) - 1 else (beyond(lv[-2], b) if len(lv) > 1
                                                       else None)
    edge = "" if 0 < i < len(lv) - 1 else (
        "; at the edge of the swept range, so half a step beyond it")
    rule = (preset.get("sizes") or {}).get(knob) if knob in K.SIZE_KNOBS else None
    if rule and "map" in rule:  # sizes: only the nominal values the preset maps
        keys = sorted(int(k) for k in rule["map"])
        lo_bound = lv[i - 1] if i > 0 else -math.inf
        hi_bound = lv[i + 1] if i < len(lv) - 1 else math.inf
        below = [k for k in keys if lo_bound < k < b][-1:]  # the closest to the best level
        above = [k for k in keys if b < k < hi_bound][:1]
        new = [*below, int(b), *above]
        if len(new) < 2:
            return None, (f"the preset maps no nominal {knob} between its neighbouring levels "
                          f"(sizes.{knob}.map: {', '.join(map(str, keys))})")
        return [normalise_knob(knob, v) for v in new], "the closest sizes the preset maps" + edge

    def effective(v: float) -> Any:
        return effective_size(preset, knob, v, preset_file) if rule else v

    out: list[float] = [b]
    for cand in (lower, upper):
        if cand is None:
            continue
        if kind == "integer":  # rounded away from the best level, never onto it
            step = 1
            if rule and "scale" in rule:  # a size: a nominal value the preset keeps as it is
                q = float(rule.get("multiple", 1)) / float(rule["scale"])
                step = int(q) if q >= 1 and float(q).is_integer() else 1
            cand = (math.floor(cand / step) if cand < b else math.ceil(cand / step)) * step
        else:
            exact = _round_sig(cand, 3)  # 0.125 stays 0.125; 3.674e-4 becomes 3.7e-4
            digits = (3, 4) if abs(exact - cand) <= 1e-9 * abs(cand) else (2, 3, 4)
            cand = next((r for d in digits if (r := _round_sig(cand, d)) not in lv), cand)
        if cand in lv or not _in_schema(spec, cand):
            continue
        try:
            if effective(cand) in {effective(o) for o in out}:
                continue
        except ConfigError:
            continue
        out.append(cand)
    if len(out) < 2:
        return None, "no distinct value between its levels within the allowed range"
    how = "geometric midpoints" if geometric else "midpoints"
    return [normalise_knob(knob, v) for v in sorted(out)], how + edge


def _p_text(p: float) -> str:
    return "not testable" if not math.isfinite(p) else f"p = {p:.2g}"


def propose_next(wcfg: WorkflowConfig, results: Path, round_name: str, name: str | None = None,
                 alpha: float = ALPHA) -> Proposal:
    """The next round's file for ``round_name`` (see the module docstring); validated by the
    planner. Raises NotFinished, NothingToNarrow, ConfigError(s)."""
    name = name or f"{round_name}_next"
    eff, df, winners = round_effects(results, round_name)
    best_knobs = dict((winners.get("best") or {}).get("knobs") or winners.get("fixed_for_next")
                      or {})
    winner_run = (winners.get("best") or {}).get("run", "?")
    objective = str(winners.get("objective") or df["objective"].iloc[0])
    reasoning = [f"effects of {round_name} on the probe-point {objective} (lower is better; "
                 f"{eff.n_runs} runs, OLS with nested-model F tests, residual df "
                 f"{eff.residual_df}); significant at alpha = {alpha:g}; winner {winner_run} "
                 f"({winners.get('reason', '')})"]
    sig, levels, best_level = _significant_knobs(eff, best_knobs, alpha, reasoning)
    swept = _narrowed_levels(wcfg, sig, levels, best_level, best_knobs, reasoning)
    if not swept:
        raise NothingToNarrow(f"nothing to narrow in {round_name}: no knob with a significant "
                              f"effect (alpha {alpha:g}) can be swept more narrowly; the "
                              "winner's values stand", reasoning)
    src = wcfg.rounds.get(round_name) or {}
    inherited = _inherited_knobs(wcfg, src, eff, best_knobs, swept)
    compute = _kept_compute_rule(src, swept)
    declares = []
    if compute:
        declares.append("batch_tokens")
    if "max_horizon" in swept:
        declares.append("horizon")
    design = _design(swept, reasoning)
    for (a, b), note in K.INTERACTIONS.items():
        if a in swept and b in swept:
            reasoning.append(f"playbook interaction note applies: {note}")
    text = _round_text(name, round_name, objective, inherited, declares, swept, design, compute,
                       reasoning, alpha)
    data = load_yaml(text)
    plan = validate_round(wcfg, name, text, Path(results), round_name)
    return Proposal(name, round_name, text, data, reasoning, plan, swept, inherited,
                    list(plan.warnings))


def _significant_knobs(eff, best_knobs: dict[str, Any], alpha: float, reasoning: list[str]
                       ) -> tuple[dict[str, float], dict[str, list[Any]], dict[str, Any]]:
    """The knobs with a significant main effect or interaction (knob -> p), every knob's swept
    levels and best level; the reasons appended to ``reasoning``."""
    sig: dict[str, float] = {}
    levels: dict[str, list[Any]] = {}
    best_level: dict[str, Any] = {}
    for knob in eff.factors:
        rows = eff.main[eff.main["knob"] == knob]
        col = "ls_mean" if rows["ls_mean"].notna().all() else "mean"
        lv = [normalise_knob(knob, v) for v in rows["level"]]
        levels[knob] = lv
        means = ", ".join(f"{m:.5g} @ {_fmt(v)}" for v, m in zip(lv, rows[col], strict=True))
        best = lv[int(rows[col].to_numpy(float).argmin())]
        best_level[knob] = best
        p = eff.p_value(knob)
        row = eff.anova[eff.anova["term"] == knob]
        ftxt = (f", F = {float(row['F'].iloc[0]):.3g} on {int(row['df'].iloc[0])} df"
                if len(row) and math.isfinite(float(row["F"].iloc[0])) else "")
        wv = best_knobs.get(knob)
        winner_txt = ("" if wv is None or K.same_value(wv, best)
                      else f"; the winner has {_fmt(wv)}")
        if math.isfinite(p) and p < alpha:
            sig[knob] = p
            reasoning.append(f"{knob}: {_p_text(p)}{ftxt} -> significant; adjusted means "
                             f"{means}; best level {_fmt(best)}{winner_txt}")
        else:
            reasoning.append(f"{knob}: {_p_text(p)}{ftxt} -> no significant effect: dropped, "
                             f"kept at the winner's {_fmt(wv) if wv is not None else '?'}")
    for note in eff.notes:
        if note.startswith("Main effect of"):
            reasoning.append(f"not used: {note}")
    for _, a in eff.anova[eff.anova["kind"] == "interaction"].iterrows():
        p, (ka, kb) = float(a["p_value"]), tuple(a["knobs"])
        if math.isfinite(p) and p < alpha:
            reasoning.append(f"{ka} x {kb}: {_p_text(p)} -> significant interaction: both "
                             "swept, crossed")
            for k in (ka, kb):
                sig.setdefault(k, p)
        else:
            reasoning.append(f"{ka} x {kb}: {_p_text(p)} -> no significant interaction")
    return sig, levels, best_level


def _narrowed_levels(wcfg: WorkflowConfig, sig: dict[str, float], levels: dict[str, list[Any]],
                     best_level: dict[str, Any], best_knobs: dict[str, Any],
                     reasoning: list[str]) -> dict[str, list[Any]]:
    """The significant knobs' narrower levels (most significant first); the ones that cannot
    be narrowed stay out, the reasons appended to ``reasoning``."""
    swept: dict[str, list[Any]] = {}
    for knob in sorted(sig, key=lambda k: sig[k]):
        new, how = narrow_levels(knob, levels[knob], best_level[knob], wcfg.preset,
                                 str(wcfg.preset_file))
        wv = best_knobs.get(knob)
        if new is None:
            other = ("" if wv is None or K.same_value(wv, best_level[knob])
                     else f" (its best level by the effect: {_fmt(best_level[knob])})")
            reasoning.append(f"{knob}: not swept again -- {how}: kept at the winner's "
                             f"{_fmt(wv) if wv is not None else '?'}{other}")
            continue
        swept[knob] = new
        centre = ("" if wv is None or K.same_value(wv, best_level[knob]) else
                  f"; centred on the best level, the baseline replicates keep the winner's "
                  f"{_fmt(wv)}")
        reasoning.append(f"{knob}: swept at {', '.join(_fmt(v) for v in new)} (was "
                         f"{', '.join(_fmt(v) for v in levels[knob])}; {how}{centre})")
    return swept


def _inherited_knobs(wcfg: WorkflowConfig, src: dict[str, Any], eff, best_knobs: dict[str, Any],
                     swept: dict[str, list[Any]]) -> list[str]:
    """Knobs the next round fixes from the round's winner: whatever the round touched, whatever
    differs from the defaults; the swept ones excepted (a block's levels override them)."""
    touched = set(eff.factors) | set(eff.fixed) | set(src.get("fixed") or {})
    for inh in src.get("inherit", []):
        touched |= set(inh["knobs"])
    for blk in src.get("blocks", []):
        touched |= set(blk.get("knobs") or {}) | set(blk.get("fixed") or {})
        runs = (blk.get("design") or {}).get("runs")
        for run in runs if isinstance(runs, list) else []:  # a list design's runs (else a count)
            touched |= set(run) if isinstance(run, dict) else set()
    defaults = {**K.defaults(), **(wcfg.config.get("knobs") or {})}
    touched |= {k for k, v in best_knobs.items() if k in defaults
                and not K.same_value(normalise_knob(k, v), defaults[k])}
    return sorted(k for k in touched if k in K.KNOBS and k in best_knobs and k not in swept)


def _kept_compute_rule(src: dict[str, Any], swept: dict[str, list[Any]]
                       ) -> dict[str, Any] | None:
    """A block that scaled batch_tokens with a knob swept again keeps its compute rule."""
    compute = None
    for blk in src.get("blocks", []):
        rule = (blk.get("compute") or {}).get("batch_tokens")
        if rule and rule.get("scale_with") in swept:
            compute = copy.deepcopy(blk["compute"])
    return compute


def _design(swept: dict[str, list[Any]], reasoning: list[str]) -> dict[str, Any]:
    """The grid; more than three knobs: the smallest balanced fraction that still estimates
    the main effects (with one residual df), when it is smaller than the grid."""
    n_levels = [len(v) for v in swept.values()]
    design: dict[str, Any] = {"type": "grid"}
    if len(swept) > 3:
        need = 2 + sum(n - 1 for n in n_levels)  # main effects + one residual df
        sizes = [s for s in designs.balanced_sizes(n_levels) if s >= need]
        if sizes and sizes[0] < designs.size(n_levels):
            design = {"type": "fractional", "runs": sizes[0]}
            reasoning.append(f"{len(swept)} knobs: balanced fraction of {sizes[0]} of the "
                             f"{designs.size(n_levels)} grid runs")
    return design


def _flow(values: list[Any]) -> str:
    return "[" + ", ".join(_fmt(v) for v in values) + "]"


def _round_text(name, source, objective, inherited, declares, swept, design, compute, reasoning,
                alpha) -> str:
    dropped = [r.split(":")[0] for r in reasoning if "dropped" in r]
    lines = [f"# Proposed by `physweep next {source}` from the results of {source}",
             "# (ranking.csv, winners.yaml, effects at the probe point). Reasoning:"]
    for r in reasoning:
        lines += textwrap.wrap(r, 96, initial_indent="#   ", subsequent_indent="#       ")
    lines += [f"name: {name}",
              f"title: Narrowing of {source}",
              "description: >",
              *textwrap.wrap(
                  f"The winner of {source} fixed (inherited); {', '.join(swept)} swept on "
                  "narrower levels around the best level"
                  + (f"; {', '.join(dropped)} dropped (no significant effect at alpha "
                     f"{alpha:g})" if dropped else "") + ".",
                  96, initial_indent="  ", subsequent_indent="  "),
              f"objective: {objective}"]
    if inherited:
        lines += ["inherit:", f"  - {{round: {source}, knobs: [{', '.join(inherited)}]}}"]
    if declares:
        lines.append(f"declares: [{', '.join(declares)}]")
    dtext = "{" + ", ".join(f"{k}: {v}" for k, v in design.items()) + "}"
    lines += ["blocks:", f"  - name: {BLOCK}", f"    design: {dtext}"]
    if compute:
        rule = compute["batch_tokens"]
        lines += ["    compute:",
                  f"      batch_tokens: {{scale_with: {rule['scale_with']}, rule: {rule['rule']}}}",
                  f"      lr_scaling: {compute.get('lr_scaling', 'linear')}"]
    lines.append("    knobs:")
    lines += [f"      {k}: {_flow(v)}" for k, v in swept.items()]
    return "\n".join(lines) + "\n"


def validate_round(wcfg: WorkflowConfig, name: str, text: str, results: Path, source: str
                   ) -> RoundPlan:
    """Plan the new round file beside the existing ones (a copy of the rounds directory), with
    the source round's winners from ``results``: any ConfigError(s) the workflow would raise."""
    tmp = Path(tempfile.mkdtemp(prefix="physweep-next-"))
    try:
        for other, path in wcfg.round_files.items():
            if other != name:
                shutil.copy(path, tmp / path.name)
        (tmp / f"{name}.yaml").write_text(text)
        config = copy.deepcopy(wcfg.config)
        config["rounds_dir"] = str(tmp)
        new = load_workflow_config(config, wcfg.root, wcfg.config_file)
        if name in new.broken:
            raise new.broken[name]
        # winners as the workflow will read them: results/<source>/winners.yaml
        winners = {}
        wfile = Path(results) / source / "winners.yaml"
        if wfile.exists():
            from physweep.plan.spec import winner_knobs

            winners[f"round:{source}"] = winner_knobs(wfile)
        return plan_round(new, name, winners)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["ALPHA", "ConfigError", "ConfigErrors", "NotFinished", "NothingToNarrow",
           "Proposal", "narrow_levels", "propose_next", "round_effects", "validate_round"]
