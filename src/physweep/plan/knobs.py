"""The playbook's knobs: names, which are sizes, which are toggles, how they interact.

Knob names, types and ranges come from ``schemas/knobs.schema.yaml`` (the single source).
"""

from __future__ import annotations

import math
from typing import Any

from physweep.plan.schema import load_schema

KNOBS: tuple[str, ...] = tuple(load_schema("knobs")["properties"])

# Knobs whose nominal value is a size the preset maps to an effective one.
SIZE_KNOBS = ("model_dim", "depth", "window_size", "latent_tokens", "max_horizon", "cadence")

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
    props = load_schema("knobs")["properties"]
    return {k: props[k]["default"] for k in KNOBS}


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
