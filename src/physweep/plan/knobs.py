"""The playbook's knobs: names, which are sizes, which are toggles, how they interact.

Every knob is declared once, in ``schemas/knobs.schema.yaml``: its type and range, its
``default`` (the playbook's bold value) and its ``x-physweep`` block (tier, the typed-config
field it ``sets``, how it becomes ``effective``, its ``stage``). Everything here that is per knob
is derived from that declaration; ``tests/plan/test_knob_registry.py`` checks the consumers that
cannot derive it (typed-config defaults, preset size rules, the preset schema).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from physweep.plan.schema import load_schema

#: run-spec sections a knob can set (model: SurrogateConfig, corrector: CorrectorConfig,
#: train: TrainConfig), in the spec's order
SECTIONS = ("model", "corrector", "train")
#: nominal -> effective rules (``physweep.plan.sizes.effective_value``)
EFFECTIVE = ("size", "lr", "ema", "none")
#: training: the value changes what is trained; evaluation: only the rollout of a trained run
STAGES = ("training", "evaluation")
TIERS = ("1A", "1B", "1C", "1D", "2", "3", "arch")


@dataclass(frozen=True)
class Knob:
    """One knob as declared in knobs.schema.yaml."""

    name: str
    default: Any  # nominal, the playbook's bold value
    tier: str
    section: str  # run-spec section / typed config it sets
    field: str  # the field of that typed config
    effective: str  # one of EFFECTIVE
    stage: str  # one of STAGES
    schema: dict[str, Any]  # type and range (JSON schema)

    @property
    def size_mapped(self) -> bool:
        return self.effective == "size"


def _declare(name: str, spec: dict[str, Any]) -> Knob:
    where = f"knobs.schema.yaml: properties.{name}"
    x = spec.get("x-physweep")
    if not isinstance(x, dict) or set(x) != {"tier", "sets", "effective", "stage"}:
        raise ValueError(f"{where}: needs `x-physweep: {{tier, sets, effective, stage}}`")
    section, _, fld = str(x["sets"]).partition(".")
    checks = {"default": "default" in spec, "tier": x["tier"] in TIERS,
              "sets": section in SECTIONS and fld.isidentifier(),
              "effective": x["effective"] in EFFECTIVE, "stage": x["stage"] in STAGES}
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise ValueError(f"{where}: bad or missing {bad} (tiers {TIERS}, sets <section>.<field> "
                         f"with section in {SECTIONS}, effective {EFFECTIVE}, stage {STAGES})")
    schema = {k: v for k, v in spec.items() if k != "x-physweep"}
    return Knob(name, spec["default"], str(x["tier"]), section, fld, x["effective"], x["stage"],
                schema)


#: every knob, in declaration order (the order of plan tables and specs)
REGISTRY: dict[str, Knob] = {k: _declare(k, v) for k, v in load_schema("knobs")["properties"].items()}

KNOBS: tuple[str, ...] = tuple(REGISTRY)

# Knobs whose nominal value is a size the preset maps to an effective one (`effective: size`).
SIZE_KNOBS: tuple[str, ...] = tuple(k for k, d in REGISTRY.items() if d.size_mapped)


def section_knobs(section: str) -> tuple[str, ...]:
    """The knobs that set a field of run-spec section ``section`` (model, corrector, train)."""
    if section not in SECTIONS:
        raise ValueError(f"unknown run-spec section {section!r}; one of {SECTIONS}")
    return tuple(k for k, d in REGISTRY.items() if d.section == section)

# Architectural toggles the playbook says to change one at a time (windowing included:
# "turn off U-shape and change windowing" is its example of two toggles at once).
ARCH_TOGGLES = ("u_shape", "pos_encoding", "norm", "channel_separated", "window_size")

# Capacity: change one axis (model_dim OR depth), never both in a round.
CAPACITY_AXES = ("model_dim", "depth")

# The playbook's interaction notes: printed as warnings when a round varies both knobs.
INTERACTIONS: dict[tuple[str, str], str] = {
    ("lr", "ema"): "LR x EMA: higher EMA tolerates slightly higher LR but can hide instabilities; "
    "watch the train/val gap",
    ("window_size", "model_dim"): "window_size x model_dim: bigger windows help small dims more; "
    "for large dims windows mostly save memory",
    ("latent_tokens", "inverse_encode"): "latent_tokens x inverse losses: more latent tokens often "
    "want lower inverse-loss weights",
    ("latent_tokens", "inverse_decode"): "latent_tokens x inverse losses: more latent tokens often "
    "want lower inverse-loss weights",
    ("guidance", "projection_weight"): "guidance lambda x projection weight: raising both can "
    "over-constrain; tune one at a time",
    ("max_horizon", "cadence"): "horizon x cadence: as the horizon grows, decrease the cadence "
    "until physics gaps stabilise",
}


def defaults() -> dict[str, Any]:
    """Every knob's declared default (nominal), normalised, in declaration order."""
    return {k: normalise(k, d.default) for k, d in REGISTRY.items()}


def normalise(knob: str, value: Any) -> Any:
    """One conversion per value: numbers declared `number` become float (1 -> 1.0), whole
    numbers declared `integer` become int (1.6e1 -> 16); unknown knobs pass unchanged (their
    name is refused elsewhere, with the file and key)."""
    spec = REGISTRY[knob].schema if knob in REGISTRY else {}
    if spec.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if spec.get("type") == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def format_value(value: Any) -> str:
    """Readable, stable text of a knob value for run names (no float noise).

    >>> format_value(2.0e-4), format_value(4.5e-4), format_value(0.05), format_value(True)
    ('2e-4', '4.5e-4', '0.05', 'true')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == 0:
            return "0"
        if not math.isfinite(value):
            raise ValueError(f"non-finite knob value {value!r}")
        if abs(value) < 1e-3 or abs(value) >= 1e5:
            mantissa, exp = f"{value:.6e}".split("e")
            mantissa = mantissa.rstrip("0").rstrip(".")
            return f"{mantissa}e{int(exp)}"
        text = f"{value:.6g}"
        return text if ("." in text or "e" in text) else text + ".0"
    return str(value)


def same_value(a: Any, b: Any) -> bool:
    """Equality of knob values that ignores float noise (3e-4 == 0.0003000000000000001)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b and type(a) is type(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return a == b
