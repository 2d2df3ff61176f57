"""Config errors: every message names the file, the key and what is allowed."""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad config, preset or round, found before any compute is spent."""

    def __init__(self, file: str, key: str, problem: str, allowed: str | None = None):
        self.file, self.key, self.problem, self.allowed = str(file), key, problem, allowed
        msg = f"{self.file}: key '{key}': {problem}"
        if allowed:
            msg += f"; allowed: {allowed}"
        super().__init__(msg)


class ConfigErrors(ValueError):
    """Several config errors reported together."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class UnknownRunError(ConfigError, KeyError):
    """A run name of the right shape that the plan does not know (a mistyped target path).

    A KeyError too (a missing key of the plan), but printed as the one-line ConfigError."""

    def __str__(self) -> str:
        return ValueError.__str__(self)
