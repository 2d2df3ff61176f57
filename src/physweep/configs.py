"""Typed configs from plain dicts: one conversion, unknown keys refused."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; an unknown key is a ValueError naming it.

    ``where`` (e.g. ``"run spec 'lr~2e-4' model"``) prefixes the message so the user knows
    which file or section held the bad key.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}: " if where else ""
        raise ValueError(
            f"{prefix}unknown key(s) {unknown} for {cls.__name__}; allowed: {sorted(names)}"
        )
    return cls(**data)


def to_dict(obj: Any) -> dict[str, Any]:
    """Dataclass -> plain dict (JSON-able when the fields are)."""
    return dataclasses.asdict(obj)
