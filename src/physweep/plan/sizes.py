"""Nominal -> effective: the active preset's `sizes` rules (explicit map or scale), the LR
scaling and the EMA window. ``effective_value`` is the one mapping of a knob's nominal value to
its effective one; which rule a knob follows is its declared ``x-physweep.effective``."""

from __future__ import annotations

from typing import Any

from physweep.plan import knobs as K
from physweep.plan.errors import ConfigError
from physweep.train.schedule import scale_lr


def effective_size(preset: dict, knob: str, nominal: int, preset_file: str = "preset") -> int:
    """Map a nominal size to the preset's effective one (explicit map or scale rule)."""
    rule = preset["sizes"][knob]
    if "map" in rule:
        table = {int(k): int(v) for k, v in rule["map"].items()}
        if int(nominal) not in table:
            raise ConfigError(preset_file, f"sizes.{knob}.map", f"no effective value for nominal "
                              f"{knob}={nominal}", ", ".join(map(str, sorted(table))))
        return table[int(nominal)]
    multiple = int(rule.get("multiple", 1))
    return max(multiple, int(round(nominal * rule["scale"] / multiple)) * multiple)


def effective_batch(preset: dict, nominal: int, preset_file: str = "preset") -> int:
    """Effective batch_tokens: the preset's size rule, then whole samples per step."""
    pps = int(preset["train"]["points_per_sample"])
    batch = effective_size(preset, "batch_tokens", nominal, preset_file)
    return max(pps, int(round(batch / pps)) * pps)


def effective_ema(ema: float, budget_nominal: int, budget_effective: int) -> float:
    """EMA decay for a shorter (or longer) training budget.

    The EMA averages over about 1 / (1 - decay) steps; a preset that trains for fewer steps
    keeps that window the same *fraction of training*: decay_eff = decay ** (nominal / effective)
    (0.9995 over 20000 steps -> 0.882 over 80 steps; identity at the playbook's scale).
    """
    return float(ema) ** (budget_nominal / budget_effective)


def effective_lr(preset: dict, nominal: float, batch: int, ref_batch: int) -> float:
    """Effective peak LR: the playbook's linear scaling with the effective batch_tokens, times
    the preset's ``sizes.lr.scale`` (default 1).

    The scale exists for budgets far shorter than the playbook's: the demo trains a few hundred
    steps instead of 20,000, and at the nominal LRs (2e-4 … 4.5e-4) a few hundred Adam steps
    barely move the model; the demo preset multiplies them so the levels stay in the same ratio.
    """
    scale = float(preset["sizes"].get("lr", {}).get("scale", 1.0))
    return scale_lr(float(nominal) * scale, batch, ref_batch)


def effective_value(preset: dict, knob: str, nominal: Any, compute: dict | None = None,
                    batch_tokens: int | None = None, preset_file: str = "preset") -> Any:
    """The effective value of ``knob`` at ``nominal`` under ``preset``, by the knob's declared
    rule (``x-physweep.effective`` in knobs.schema.yaml): ``size`` -> the preset's size rule,
    ``lr`` -> linear in the effective batch (``batch_tokens``, the run's nominal batch, default
    ``compute.batch_tokens``) relative to the effective ``compute.ref_batch_tokens``, times the
    preset's LR scale; ``ema`` -> the same window as a fraction of the effective
    ``compute.budget_steps``; ``none`` -> unchanged. ``compute``: the config's nominal compute
    section (needed by the ``lr`` and ``ema`` rules only)."""
    rule = K.REGISTRY[knob].effective
    if rule == "size":
        return effective_size(preset, knob, nominal, preset_file)
    if rule == "none":
        return nominal
    if compute is None:
        raise ValueError(f"the effective {knob} needs the compute settings")
    if rule == "lr":
        batch = effective_batch(preset, int(batch_tokens or compute["batch_tokens"]), preset_file)
        ref = effective_batch(preset, int(compute["ref_batch_tokens"]), preset_file)
        return effective_lr(preset, nominal, batch, ref)
    budget = int(compute["budget_steps"])  # rule == "ema"
    return effective_ema(nominal, budget, effective_size(preset, "budget_steps", budget, preset_file))


def effective_values(preset: dict, nominal: dict[str, Any], compute: dict | None = None,
                     batch_tokens: int | None = None, preset_file: str = "preset"
                     ) -> dict[str, Any]:
    """``effective_value`` of every knob in ``nominal``."""
    return {k: effective_value(preset, k, v, compute, batch_tokens, preset_file)
            for k, v in nominal.items()}


def preset_resource(preset: dict, kind: str, key: str) -> int:
    """A job resource of one kind of rule (train, eval, data): the preset's value, else the
    default the preset schema declares (``$defs.resources``) -- the one place defaults live."""
    from physweep.plan.schema import load_schema

    value = (preset.get("resources") or {}).get(kind, {}).get(key)
    if value is None:
        value = load_schema("preset")["$defs"]["resources"]["properties"][key]["default"]
    return int(value)
