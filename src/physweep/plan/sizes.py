"""Nominal -> effective sizes: the active preset's `sizes` rules (explicit map or scale)."""

from __future__ import annotations

from physweep.plan.errors import ConfigError


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
    return float(nominal) * scale * batch / ref_batch
