"""JSON-schema (draft 2020-12) validation of config, presets and rounds with readable errors."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

from physweep.io import FLOAT_RE, INT_RE, load_yaml
from physweep.plan.errors import ConfigError, ConfigErrors

SCHEMA_DIR = Path(__file__).parent / "schemas"
SCHEMAS = ("knobs", "config", "preset", "round")


@cache
def load_schema(name: str) -> dict[str, Any]:
    return load_yaml((SCHEMA_DIR / f"{name}.schema.yaml").read_text())


def coerce(data: Any, schema: dict[str, Any]) -> Any:
    """Numbers written as strings -> numbers where ``schema`` wants one ("3e-4" for a `number`,
    "100" or "2e4" for an `integer`; a whole float like 2e4 -> 20000 for an `integer`),
    "true"/"false" -> booleans where it wants a boolean; everything else unchanged. For configs
    not read by :func:`physweep.io.load_yaml`: Snakemake loads --configfile with YAML 1.1
    (`lr: 3e-4` is a string there) and parses --config values it cannot read as int/float with
    a loader that returns strings (`--config 'compute={...}'`)."""
    ref = schema.get("$ref", "")
    if ref.endswith(".schema.yaml"):
        schema = load_schema(ref.removesuffix(".schema.yaml"))
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]
    if isinstance(data, float) and "integer" in types and "number" not in types \
            and data.is_integer():
        return int(data)  # budget_steps: 2e4
    if isinstance(data, str):
        text = data.strip()
        if "integer" in types and INT_RE.match(text):
            return int(text)
        if "integer" in types and FLOAT_RE.match(text) and float(text).is_integer():
            return int(float(text))
        if "number" in types and (INT_RE.match(text) or FLOAT_RE.match(text)):
            return int(text) if INT_RE.match(text) else float(text)
        if "boolean" in types and text.lower() in ("true", "false"):
            return text.lower() == "true"
        return data
    if isinstance(data, dict):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        return {k: coerce(v, props[k]) if k in props else
                coerce(v, extra) if isinstance(extra, dict) else v for k, v in data.items()}
    if isinstance(data, list) and isinstance(schema.get("items"), dict):
        return [coerce(v, schema["items"]) for v in data]
    return data


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
