"""JSON-schema (draft 2020-12) validation of config, presets and rounds with readable errors."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

from physweep.plan.errors import ConfigError, ConfigErrors

SCHEMA_DIR = Path(__file__).parent / "schemas"
SCHEMAS = ("knobs", "config", "preset", "round")


@cache
def load_schema(name: str) -> dict[str, Any]:
    return yaml.safe_load((SCHEMA_DIR / f"{name}.schema.yaml").read_text())


@cache
def _registry() -> Registry:
    resources = [(f"{n}.schema.yaml", Resource.from_contents(load_schema(n))) for n in SCHEMAS]
    return Registry().with_resources(resources)


def _key(path) -> str:
    parts = []
    for p in path:
        parts.append(f"[{p}]" if isinstance(p, int) else (("." if parts else "") + str(p)))
    return "".join(parts) or "<top level>"


def _describe(err: jsonschema.ValidationError) -> tuple[str, str, str | None]:
    key = _key(err.absolute_path)
    v, schema = err.validator, err.schema
    if v == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
        bad = ", ".join(f"{key}.{e}" if key != "<top level>" else e for e in extra)
        return bad or key, "unknown key", ", ".join(allowed) if allowed else None
    if v == "required":
        return key, err.message, None
    if v == "enum":
        return key, f"value {err.instance!r} is not allowed", ", ".join(map(repr, err.validator_value))
    if v == "type":
        return key, f"value {err.instance!r} has the wrong type", f"type {err.validator_value}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        lo = schema.get("minimum", schema.get("exclusiveMinimum", "-inf"))
        hi = schema.get("maximum", schema.get("exclusiveMaximum", "inf"))
        lo_b = "(" if "exclusiveMinimum" in schema else "["
        hi_b = ")" if "exclusiveMaximum" in schema else "]"
        return key, f"value {err.instance!r} is out of range", f"{lo_b}{lo}, {hi}{hi_b}"
    if v in ("minItems", "minProperties"):
        return key, "must not be empty", f"at least {err.validator_value} item(s)"
    if v == "pattern":
        return key, f"value {err.instance!r} is not allowed", f"pattern {err.validator_value}"
    if v in ("oneOf", "anyOf"):
        return key, f"value {err.instance!r} matches none of the allowed forms", schema.get(
            "description"
        )
    return key, err.message, None


def validate(data: Any, schema_name: str, file: str | Path) -> None:
    """Validate ``data`` against ``<schema_name>.schema.yaml``; raise ConfigErrors listing all."""
    validator = jsonschema.Draft202012Validator(load_schema(schema_name), registry=_registry())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigErrors([ConfigError(str(file), *_describe(e)) for e in errors])


def check_knob_value(knob: str, value: Any, file: str | Path, key: str) -> None:
    """Validate one knob value against knobs.schema.yaml (unknown knob or bad value)."""
    schema = load_schema("knobs")
    props = schema["properties"]
    if knob not in props:
        raise ConfigError(str(file), key, f"unknown knob '{knob}'", ", ".join(props))
    validator = jsonschema.Draft202012Validator(props[knob])
    for err in validator.iter_errors(value):
        _, problem, allowed = _describe(err)
        raise ConfigError(str(file), key, problem, allowed)


def check_knob_name(knob: str, file: str | Path, key: str) -> None:
    """Refuse an unknown knob name, listing the knobs that exist."""
    props = load_schema("knobs")["properties"]
    if knob not in props:
        raise ConfigError(str(file), key, f"unknown knob '{knob}'", ", ".join(props))
