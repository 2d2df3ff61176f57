"""The run table printed by `physweep plan` (and stored as the round's plan.json)."""

from __future__ import annotations

from typing import Any

from physweep.plan import knobs as K
from physweep.plan.config import WorkflowConfig
from physweep.plan.round import Pending, RoundPlan
from physweep.plan.sizes import effective_batch, effective_ema, effective_lr, effective_size
from physweep.plan.spec import portable_path


def _cell(wcfg: WorkflowConfig, knob: str, value: Any) -> str:
    if isinstance(value, Pending):
        return str(value)
    text = K.format_value(value)
    if knob in K.SIZE_KNOBS:
        eff = effective_size(wcfg.preset, knob, value, str(wcfg.preset_file))
        if eff != value:
            text += f"->{eff}"
    elif knob == "ema":
        nominal = wcfg.config["compute"]["budget_steps"]
        steps = effective_size(wcfg.preset, "budget_steps", nominal, str(wcfg.preset_file))
        eff = effective_ema(value, nominal, steps)
        if steps != nominal:
            text += f"->{eff:.4g}"
    return text


def _lr_text(wcfg: WorkflowConfig, run) -> str:
    lr = run.values["lr"]
    ratio = effective_lr(wcfg.preset, 1.0, _batch_eff(wcfg, run.batch_tokens),
                         _batch_eff(wcfg, wcfg.config["compute"]["ref_batch_tokens"]))
    if isinstance(lr, Pending):
        return f"{lr}" + (f" x{ratio:.3g}" if ratio != 1 else "")
    return K.format_value(float(f"{lr * ratio:.4g}"))


def _batch_eff(wcfg: WorkflowConfig, nominal: int) -> int:
    return effective_batch(wcfg.preset, nominal, str(wcfg.preset_file))


def _batch_text(wcfg: WorkflowConfig, run) -> str:
    text = f"{run.batch_tokens}->{_batch_eff(wcfg, run.batch_tokens)}"
    return text + (f" ({run.batch_rule})" if run.batch_rule else "")


def plan_records(wcfg: WorkflowConfig, plan: RoundPlan) -> dict[str, Any]:
    """JSON-able plan: runs with nominal/effective values, origins, warnings."""
    runs = []
    for r in plan.runs:
        runs.append({
            "run": r.name, "block": r.block, "blocks": r.blocks, "seed": r.seed,
            "baseline": r.is_baseline,
            "nominal": {k: str(v) if isinstance(v, Pending) else v for k, v in r.values.items()},
            "effective": {k: _cell(wcfg, k, v) for k, v in r.values.items()
                          if k in K.SIZE_KNOBS or k == "ema"},
            "fixed_from": {k: o for k, o in r.origin.items() if o.startswith(("winner", "best"))},
            "batch_tokens": _batch_text(wcfg, r),
            "lr_scaled": _lr_text(wcfg, r),
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
    }


def format_table(wcfg: WorkflowConfig, plan: RoundPlan) -> str:
    cols = plan.varied
    constant = [k for k in K.KNOBS if k not in cols]
    lines = [
        f"{plan.round}: {plan.title}   (objective: {plan.objective}; preset: {wcfg.preset_name}; "
        f"{len(plan.runs)} runs; file: {plan.file})",
        "",
        "common to every run (nominal->effective; <-X = taken from the winner of X):",
    ]
    common = [f"{k}={_cell(wcfg, k, plan.runs[0].values[k])}" for k in constant]
    for i in range(0, len(common), 6):
        lines.append("  " + "  ".join(common[i:i + 6]))
    header = ["run", "block", "seed", *cols, "batch_tokens", "lr_scaled", "fixed_from"]
    rows = []
    for r in plan.runs:
        fixed = sorted({o for o in r.origin.values() if o.startswith(("winner", "best"))})
        batch = _batch_text(wcfg, r)
        rows.append([r.name, "+".join(r.blocks), str(r.seed), *[_cell(wcfg, k, r.values[k])
                    for k in cols], batch, _lr_text(wcfg, r), "; ".join(fixed) or "-"])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines.append("")
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    for a in plan.aliases:
        sw = "_".join(f"{k}~{K.format_value(v)}" for k, v in a.swept.items())
        lines.append(f"\n  {sw} in block {a.block} is the best run of block {a.alias_of_block} "
                     "itself: no extra run")
    if plan.warnings:
        lines.append("\nguardrail warnings:")
        lines += [f"  ! {w}" for w in plan.warnings]
    return "\n".join(lines)
