"""The run table printed by `physweep plan` (and stored as the round's plan.json)."""

from __future__ import annotations

from typing import Any

from physweep.plan import knobs as K
from physweep.plan.config import WorkflowConfig
from physweep.plan.round import Pending, RoundPlan
from physweep.plan.sizes import effective_batch, effective_size, effective_value
from physweep.plan.spec import memory_section, planned_memory, portable_path

# Knobs whose cells read nominal->effective: the rules that are the same for every run of a
# round. The `lr` rule depends on the run's batch_tokens: its effective value is the lr_scaled
# column.
CELL_RULES = ("size", "ema")


def _effective(wcfg: WorkflowConfig, knob: str, value: Any, batch_tokens: int | None = None) -> Any:
    return effective_value(wcfg.preset, knob, value, wcfg.config["compute"], batch_tokens,
                           str(wcfg.preset_file))


def _cell(wcfg: WorkflowConfig, knob: str, value: Any) -> str:
    if isinstance(value, Pending):
        return str(value)
    text = K.format_value(value)
    if K.REGISTRY[knob].effective in CELL_RULES:
        eff = _effective(wcfg, knob, value)
        if not K.same_value(eff, value):
            text += "->" + (K.format_value(eff) if isinstance(eff, int) else f"{eff:.4g}")
    return text


def _lr_text(wcfg: WorkflowConfig, run) -> str:
    lr = run.values["lr"]
    if isinstance(lr, Pending):
        ratio = _effective(wcfg, "lr", 1.0, run.batch_tokens)
        return f"{lr}" + (f" x{ratio:.3g}" if ratio != 1 else "")
    return K.format_value(float(f"{_effective(wcfg, 'lr', lr, run.batch_tokens):.4g}"))


def _batch_eff(wcfg: WorkflowConfig, nominal: int) -> int:
    return effective_batch(wcfg.preset, nominal, str(wcfg.preset_file))


def _batch_text(wcfg: WorkflowConfig, run) -> str:
    text = f"{run.batch_tokens}->{_batch_eff(wcfg, run.batch_tokens)}"
    return text + (f" ({run.batch_rule})" if run.batch_rule else "")


def _memory_cell(mem: dict[str, Any] | None) -> str:
    """Predicted peak training memory in GiB; ``a->b (mb x->y)`` where the micro-batch was split
    to fit the device, ``!`` where not even one sample per micro-batch fits."""
    if mem is None:
        return "?"
    text = f"{mem['predicted_gib']:.1f}" + ("*" if mem.get("assumed") else "")
    if mem["micro_batch"] != mem["nominal_micro_batch"]:
        text = (f"{mem['nominal_gib']:.1f}->{text} (mb {mem['nominal_micro_batch']}->"
                f"{mem['micro_batch']})")
    return text if mem["fits"] else text + " !"


def memory_header(wcfg: WorkflowConfig) -> str:
    """What the ``mem GiB`` column predicts and for which device."""
    from physweep.plan.memory import MEMORY_HEADROOM

    sec = memory_section(wcfg.preset)
    train = wcfg.preset["train"]
    gb = sec["device_memory_gb"]
    prec = "bf16 autocast" if train["precision"] == "bf16" else "fp32"
    text = (f"memory: predicted peak per training job in GiB (physweep.plan.memory; {prec}, "
            f"micro_batch {train['micro_batch']}, grid {sec['grid'][0]}x{sec['grid'][1]}, "
            f"the run's largest horizon"
            + ("; torch.compile counted as eager, an upper bound" if train.get("compile")
               else "") + ")")
    text += ("\n  ?: a size knob or the horizon waits for a winner; *: the inverse-loss weights, "
             "corrector steps or freeze flag do, their costliest values assumed (an upper bound)")
    if gb:
        text += (f"\n  device: {gb:g} GiB (device_memory_gb in {wcfg.preset_file.name}), a job "
                 f"may plan {MEMORY_HEADROOM:.0%} = {MEMORY_HEADROOM * gb:.1f} GiB; where a run "
                 "would not fit, its micro-batch is split (gradient accumulation, batch_tokens "
                 "unchanged) -- shown as before->after (mb n->m)")
    return text


def memory_lines(plan: RoundPlan, memory: dict[str, dict[str, Any] | None]) -> list[str]:
    """One line per run whose micro-batch is split or that does not fit at all."""
    out = []
    for r in plan.runs:
        mem = memory.get(r.name)
        if mem is None:
            continue
        if not mem["fits"]:
            out.append(f"  ! {r.name}: {mem['predicted_gib']:.1f} GiB at micro_batch 1 exceeds "
                       f"{mem['budget_gib']:.1f} GiB: lower points_per_sample, the horizon or "
                       "the model size, or use a larger device")
        elif mem["micro_batch"] != mem["nominal_micro_batch"]:
            out.append(f"  {r.name}: {mem['nominal_gib']:.1f} GiB at micro_batch "
                       f"{mem['nominal_micro_batch']} > {mem['budget_gib']:.1f} GiB -> "
                       f"micro_batch {mem['micro_batch']} ({mem['predicted_gib']:.1f} GiB; "
                       "gradient accumulation, batch_tokens unchanged)")
    return out


def compute_summary(wcfg: WorkflowConfig, plan: RoundPlan) -> dict[str, Any]:
    """Training jobs and compute of a round before anything runs, in budget units: 1 unit = one
    training's full budget (budget_steps x ref_batch_tokens tokens, the same for every run of a
    round). Runs that differ only in what training does not read share one training
    (``physweep.plan.workflow.round_trainings``). Every training trains to the probe point
    (probe_fraction of the budget); it trains on to the end when a run on it continues: always
    for a training of a baseline replicate, at most for every training. ``*_unshared``: the same
    with one training per run (what sharing saves)."""
    from physweep.plan.workflow import round_trainings

    fraction = float(wcfg.config["early_stop"]["probe_fraction"])
    n, n_base = len(plan.runs), len(plan.baseline)
    trainings = round_trainings(wcfg, plan)
    t = len(trainings)
    t_base = sum(1 for runs in trainings.values() if set(runs) & set(plan.baseline))
    comp = wcfg.config["compute"]
    steps = effective_size(wcfg.preset, "budget_steps", int(comp["budget_steps"]),
                           str(wcfg.preset_file))
    if not plan.early_stop:  # exhaustive round: every training continues to the end
        t_base, n_base = t, n
    return {
        "runs": n, "trainings": t, "early_stop": plan.early_stop,
        "shared": [runs for runs in trainings.values() if len(runs) > 1],
        "probe_jobs": t, "continuations_min": t_base, "continuations_max": t,
        "training_jobs_min": t + t_base, "training_jobs_max": 2 * t,
        "budget_units_min": round(t_base + (t - t_base) * fraction, 3),
        "budget_units_max": float(t),
        "training_jobs_unshared_min": n + n_base, "training_jobs_unshared_max": 2 * n,
        "budget_units_unshared_min": round(n_base + (n - n_base) * fraction, 3),
        "budget_units_unshared_max": float(n),
        "probe_fraction": fraction,
        "unit": f"{comp['budget_steps']} steps x {comp['ref_batch_tokens']} tokens nominal "
                f"({steps} steps at preset {wcfg.preset_name})",
    }


def compute_text(summary: dict[str, Any]) -> str:
    s = summary
    text = (f"trainings: {s['trainings']} distinct for {s['runs']} runs"
            + (" (runs differing only in evaluation-time knobs share one: "
               + "; ".join(" = ".join(runs) for runs in s["shared"]) + ")" if s["shared"] else "")
            + f"\ntraining jobs: {s['training_jobs_min']}-{s['training_jobs_max']} "
            f"({s['trainings']} trainings to the probe point, then "
            + (f"{s['continuations_min']}-{s['continuations_max']} continuations: the baseline "
               f"replicates' and those of runs the early-stop rule keeps)\n"
               if s.get("early_stop", True) else
               f"{s['continuations_max']} continuations: early stopping is off, every run trains "
               "to the end; the rule's decisions are recorded)\n")
            + f"compute: {_units(s['budget_units_min'])}-{_units(s['budget_units_max'])} budget "
            f"units (1 unit = one training's full budget, {s['unit']}; a training stopped at "
            f"the probe costs {s['probe_fraction']:g})")
    if s["shared"]:
        text += (f"; without sharing {_units(s['budget_units_unshared_min'])}-"
                 f"{_units(s['budget_units_unshared_max'])}")
    return text


def _units(x: float) -> str:
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def design_lines(plan: RoundPlan, limit: int = 8) -> list[str]:
    """One line per block design; fractions add their resolution and alias structure."""
    lines = []
    for d in plan.designs:
        levels = d.get("levels") or {}
        shape = "x".join(str(n) for n in levels.values())
        text = f"  {d['block']}: {d['type']}"
        if d["type"] == "fractional":
            res = d.get("resolution")
            kind = "regular 2^(k-p)" if d.get("regular") and res != "full" else "balanced"
            text += (f" {shape}, {d['runs']} of {d['full']} runs ({kind}), resolution {res}"
                     if res != "full" else f" {shape}, {d['runs']} runs (the full grid)")
            if d.get("generators"):
                text += "; generators " + ", ".join(f"{k} = {v}"
                                                    for k, v in d["generators"].items())
        elif shape:
            text += f" {shape}, {d['runs']} runs"
        else:
            text += f", {d['runs']} runs"
        lines.append(text)
        for label, items in (("main effects aliased with two-factor interactions",
                              d.get("aliases")),
                             ("two-factor interactions aliased with each other",
                              d.get("aliases_2fi"))):
            if items:
                more = f"; ... {len(items) - limit} more" if len(items) > limit else ""
                lines.append(f"    {label}: " + "; ".join(items[:limit]) + more)
        if d["type"] == "fractional" and d.get("resolution") not in ("full", None) \
                and not d.get("aliases"):
            lines.append("    main effects clear of two-factor interactions")
    return lines


def plan_records(wcfg: WorkflowConfig, plan: RoundPlan) -> dict[str, Any]:
    """JSON-able plan: runs with nominal/effective values, origins, warnings."""
    from physweep.plan.workflow import round_trainings

    training_of = {run: key for key, names in round_trainings(wcfg, plan).items() for run in names}
    runs = []
    for r in plan.runs:
        runs.append({
            "run": r.name, "block": r.block, "blocks": r.blocks, "seed": r.seed,
            "training": training_of[r.name],
            "baseline": r.is_baseline,
            "nominal": {k: str(v) if isinstance(v, Pending) else v for k, v in r.values.items()},
            "effective": {k: _cell(wcfg, k, v) for k, v in r.values.items()
                          if K.REGISTRY[k].effective in CELL_RULES},
            "fixed_from": {k: o for k, o in r.origin.items() if o.startswith(("winner", "best"))},
            "batch_tokens": _batch_text(wcfg, r),
            "lr_scaled": _lr_text(wcfg, r),
            "memory": planned_memory(wcfg, r),
        })
    return {
        "round": plan.round, "title": plan.title, "objective": plan.objective,
        "objective_description": wcfg.config["objectives"][plan.objective],
        "preset": wcfg.preset_name, "file": portable_path(plan.file, wcfg.root),
        "varied": plan.varied,
        "blocks": plan.blocks, "inherits": plan.inherits, "runs": runs,
        "aliases": [{"block": a.block, "swept": a.swept, "alias_of": f"best of {a.alias_of_block}"}
                    for a in plan.aliases],
        "warnings": plan.warnings,
        "designs": plan.designs,
        "compute": compute_summary(wcfg, plan),
    }


def format_table(wcfg: WorkflowConfig, plan: RoundPlan) -> str:
    cols = plan.varied
    constant = [k for k in K.KNOBS if k not in cols]
    lines = [
        f"{plan.round}: {plan.title}   (objective: {plan.objective}; preset: {wcfg.preset_name}; "
        f"{len(plan.runs)} runs; file: {plan.file})",
        compute_text(compute_summary(wcfg, plan)),
        "designs:",
        *design_lines(plan),
        "",
        "common to every run (nominal->effective; <-X = taken from the winner of X):",
    ]
    common = [f"{k}={_cell(wcfg, k, plan.runs[0].values[k])}" for k in constant]
    for i in range(0, len(common), 6):
        lines.append("  " + "  ".join(common[i:i + 6]))
    memory = {r.name: planned_memory(wcfg, r) for r in plan.runs}
    lines.append(memory_header(wcfg))
    header = ["run", "block", "seed", *cols, "batch_tokens", "lr_scaled", "mem GiB", "fixed_from"]
    rows = []
    for r in plan.runs:
        fixed = sorted({o for o in r.origin.values() if o.startswith(("winner", "best"))})
        batch = _batch_text(wcfg, r)
        rows.append([r.name, "+".join(r.blocks), str(r.seed), *[_cell(wcfg, k, r.values[k])
                    for k in cols], batch, _lr_text(wcfg, r), _memory_cell(memory[r.name]),
                    "; ".join(fixed) or "-"])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines.append("")
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    for a in plan.aliases:
        sw = "_".join(f"{k}~{K.format_value(v)}" for k, v in a.swept.items())
        lines.append(f"\n  {sw} in block {a.block} is the best run of block {a.alias_of_block} "
                     "itself: no extra run")
    split = memory_lines(plan, memory)
    if split:
        lines.append("\nmemory (micro-batches split to fit the device):")
        lines += split
    if plan.warnings:
        lines.append("\nguardrail warnings:")
        lines += [f"  ! {w}" for w in plan.warnings]
    return "\n".join(lines)
