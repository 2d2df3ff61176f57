"""Load and validate the workflow config, the active preset and every round file.

Everything is checked here, at load time, before any job runs: schema errors, unknown knobs,
bad values, round names that differ from their file names, duplicate round names, references to
missing rounds, inheritance cycles. ``load_workflow_config`` is what the Snakefile and the
``physweep`` CLI call. A bad config or preset is refused at once; a bad round file is set aside
in ``WorkflowConfig.broken`` together with every round that inherits from it (directly or not),
with a warning, so the other rounds still plan (``Workflow`` refuses them all together).

YAML is read with :func:`physweep.io.load_yaml` (3e-4 is a number); a config Snakemake loaded
itself (YAML 1.1, where `lr: 3e-4` is a string, and --config values it could not parse) has
its number-like strings turned into numbers where the schema wants a number
(:func:`physweep.plan.schema.coerce`).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from physweep.io import load_yaml
from physweep.plan import knobs as K
from physweep.plan.errors import ConfigError, ConfigErrors
from physweep.plan.schema import check_knob_name, check_knob_value, coerce, load_schema, validate

REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass
class WorkflowConfig:
    """The validated config, the active preset and all rounds (by name)."""

    config: dict[str, Any]
    preset: dict[str, Any]
    rounds: dict[str, dict[str, Any]]
    round_files: dict[str, Path]
    root: Path
    config_file: str = "config/config.yaml"
    preset_file: Path = field(default_factory=Path)
    # round name -> why it cannot be planned: its file is broken, or it inherits from a round
    # whose file is (the file's own errors included)
    broken: dict[str, ConfigErrors] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # one per broken round file

    @property
    def preset_name(self) -> str:
        return self.config["preset"]

    @property
    def results_dir(self) -> str:
        return self.config["results_dir"]


def read_yaml(path: Path) -> Any:
    try:
        with open(path) as fh:
            return load_yaml(fh)
    except FileNotFoundError:
        raise
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), "<file>", f"not valid YAML: {exc}") from exc


normalise_knob = K.normalise  # the declared type decides: 1 -> 1.0 for a number, 16.0 -> 16


def _resolve(root: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else root / p


def load_workflow_config(
    config: dict[str, Any], root: Path | None = None, config_file: str = "config/config.yaml"
) -> WorkflowConfig:
    """Validate ``config`` (as Snakemake loaded it) and load the preset and round files."""
    root = Path(root) if root else REPO_ROOT
    config = copy.deepcopy(config)
    if config.get("knobs") is None:  # `knobs:` with every override commented out
        config["knobs"] = {}
    config = coerce(config, load_schema("config"))
    validate(config, "config", config_file)
    # config `knobs` only overrides the declared defaults (schemas/knobs.schema.yaml)
    overrides = {k: K.normalise(k, v) for k, v in config["knobs"].items()}
    config["knobs"] = {k: overrides.get(k, default) for k, default in K.defaults().items()}

    preset_file = _resolve(root, config["presets_dir"]) / f"{config['preset']}.yaml"
    if not preset_file.exists():
        available = sorted(p.stem for p in preset_file.parent.glob("*.yaml"))
        raise ConfigError(config_file, "preset", f"no preset file {preset_file}",
                          ", ".join(available) or "none found")
    preset = read_yaml(preset_file)
    check_preset_knobs(preset, preset_file, config_file)
    validate(preset, "preset", preset_file)

    check_preset_sections(preset, preset_file)

    rounds_dir = _resolve(root, config["rounds_dir"])
    if not rounds_dir.is_dir():
        raise ConfigError(config_file, "rounds_dir", f"{rounds_dir} is not a directory")
    rounds: dict[str, dict[str, Any]] = {}
    files: dict[str, Path] = {}
    broken: dict[str, list[ConfigError]] = {}
    broken_files: dict[str, Path] = {}
    for path in sorted(rounds_dir.glob("*.yaml")):
        errors: list[ConfigError] = []
        data = None
        try:
            data = read_yaml(path)
            validate(data, "round", path)
        except ConfigError as exc:
            errors.append(exc)
        except ConfigErrors as exc:
            errors.extend(exc.errors)
        declared = data.get("name") if isinstance(data, dict) else None
        if not errors and declared != path.stem:
            errors.append(ConfigError(str(path), "name", f"round name '{declared}' differs from "
                                      f"the file name {path.name}", f"name: {path.stem} (the "
                                      "file name without .yaml), or rename the file"))
        if isinstance(declared, str) and declared in rounds:
            errors.append(ConfigError(str(path), "name", f"duplicate round name '{declared}' "
                                      f"(also in {files[declared]})",
                                      "a name not used by another round file"))
        if errors:
            for name in dict.fromkeys([path.stem, declared]):
                if isinstance(name, str) and name not in rounds and name not in broken:
                    broken[name], broken_files[name] = errors, path
            continue
        rounds[declared], files[declared] = data, path

    wcfg = WorkflowConfig(config, preset, rounds, files, root, config_file, preset_file)
    for name in list(rounds):
        try:
            check_round(wcfg, name, set(broken))
        except ConfigError as exc:
            broken[name], broken_files[name] = [exc], files[name]
    for name, errs in _cycles(rounds, files).items():
        broken.setdefault(name, errs)
        broken_files.setdefault(name, files[name])
    # rounds that inherit from a broken round, directly or through others
    changed = True
    while changed:
        changed = False
        for name, rnd in rounds.items():
            if name in broken:
                continue
            for i, inh in enumerate(rnd.get("inherit", [])):
                if inh["round"] in broken:
                    src = inh["round"]
                    broken[name] = [ConfigError(
                        str(files[name]), f"inherit[{i}].round", f"round '{name}' needs the "
                        f"winners of round '{src}', which cannot be planned ({broken_files[src]})",
                        f"fix {broken_files[src]} or remove this inherit entry")] + broken[src]
                    broken_files.setdefault(name, files[name])
                    changed = True
                    break
    for name in broken:
        rounds.pop(name, None)
        files.pop(name, None)
    wcfg.broken = {n: ConfigErrors(list(dict.fromkeys(errs))) for n, errs in broken.items()}
    wcfg.warnings = [f"round '{n}' ({broken_files[n]}) is not planned: {errs[0]}"
                     + (f" (+{len(errs) - 1} more)" if len(errs) > 1 else "")
                     for n, errs in broken.items()]
    return wcfg


def _cycles(rounds: dict[str, dict[str, Any]], files: dict[str, Path]
            ) -> dict[str, list[ConfigError]]:
    """Rounds on an inheritance cycle (a inherits from b, b from a), each with the cycle spelled
    out at its own inherit entry."""
    out: dict[str, list[ConfigError]] = {}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for inh in rounds[name].get("inherit", []):
            nxt = inh["round"]
            if nxt not in rounds or nxt == name:
                continue
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                text = " -> ".join(cycle)
                for a, b in zip(cycle, cycle[1:], strict=False):
                    i = next(j for j, x in enumerate(rounds[a]["inherit"]) if x["round"] == b)
                    out.setdefault(a, []).append(ConfigError(
                        str(files[a]), f"inherit[{i}].round", f"inheritance cycle {text}: every "
                        "round in it waits for the winners of the next",
                        "rounds that inherit only from rounds that do not inherit from them; "
                        "remove one inherit entry of the cycle"))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[name] = 2

    for name in rounds:
        if name not in state:
            visit(name, [name])
    return out


def check_preset_knobs(preset: Any, preset_file: Path, config_file: str) -> None:
    """A preset's fixed model / corrector / train settings may not set a field that a knob sets
    (knobs.schema.yaml `x-physweep.sets`): the knob's value (default, config `knobs`, round
    `fixed`, a sweep) decides it, the same at every preset."""
    if not isinstance(preset, dict):
        return
    for name, knob in K.REGISTRY.items():
        settings = preset.get(knob.section)
        if isinstance(settings, dict) and knob.field in settings:
            raise ConfigError(str(preset_file), f"{knob.section}.{knob.field}",
                              f"is set by knob '{name}', which a preset cannot set (set the knob "
                              f"with `knobs: {{{name}: ...}}` in {config_file}, --config "
                              f"'knobs={{{name}: ...}}' or a round's `fixed:`)",
                              f"{knob.section} settings that no knob sets")


def check_preset_sections(preset: dict[str, Any], preset_file: Path) -> None:
    """Build the dataset config and eval suites now, so a bad key fails before any job runs."""
    from physweep.configs import from_dict
    from physweep.evaluate.suite_config import EvalSuite
    from physweep.physics.dataset_config import DatasetConfig

    try:
        from_dict(DatasetConfig, dict(preset["data"]))
    except (TypeError, ValueError) as exc:
        allowed = ", ".join(f.name for f in dataclasses.fields(DatasetConfig))
        raise ConfigError(str(preset_file), "data", str(exc), allowed) from exc
    for name, suite in preset["eval"].items():
        try:
            from_dict(EvalSuite, dict(suite, name=name))
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(preset_file), f"eval.{name}", str(exc)) from exc


def check_round(wcfg: WorkflowConfig, name: str, broken: set[str] | frozenset[str] = frozenset()
                ) -> None:
    """Semantic checks of one round beyond its schema (knob names and values, references).
    ``broken``: names of rounds whose files could not be read (a reference to them is not an
    unknown round; the caller refuses the round with that file's errors)."""
    rnd, f = wcfg.rounds[name], wcfg.round_files[name]
    for i, inh in enumerate(rnd.get("inherit", [])):
        if inh["round"] not in wcfg.rounds and inh["round"] not in broken:
            raise ConfigError(f, f"inherit[{i}].round", f"unknown round '{inh['round']}'",
                              ", ".join(sorted(set(wcfg.rounds) - {name})) or "no other rounds")
        if inh["round"] == name:
            raise ConfigError(f, f"inherit[{i}].round", "a round cannot inherit from itself")
        for j, k in enumerate(inh["knobs"]):
            check_knob_name(k, f, f"inherit[{i}].knobs[{j}]")
    for k, v in (rnd.get("fixed") or {}).items():
        check_knob_value(k, v, f, f"fixed.{k}")
    inherited = {k for inh in rnd.get("inherit", []) for k in inh["knobs"]}
    both = sorted(inherited & set(rnd.get("fixed") or {}))
    if both:
        raise ConfigError(f, "fixed", f"knob(s) {both} are both inherited and fixed",
                          "inherit a knob or fix it, not both")
    seen_blocks: list[str] = []
    for b, block in enumerate(rnd["blocks"]):
        where = f"blocks[{b}]"
        if block["name"] in seen_blocks:
            raise ConfigError(f, f"{where}.name", f"duplicate block name '{block['name']}'")
        design = block["design"]
        swept: set[str] = set()
        if design["type"] == "list":
            if not isinstance(design.get("runs"), list):
                raise ConfigError(f, f"{where}.design.runs", "a list design needs its runs",
                                  "a list of {knob: value} mappings")
            if block.get("knobs"):
                raise ConfigError(f, f"{where}.knobs", "a list design takes its values from "
                                  "design.runs, not knobs")
            for r, run in enumerate(design["runs"]):
                for k, v in run.items():
                    check_knob_value(k, v, f, f"{where}.design.runs[{r}].{k}")
                    swept.add(k)
        else:
            if not block.get("knobs"):
                raise ConfigError(f, f"{where}.knobs", "empty design: no knobs to sweep",
                                  "a mapping knob -> list of levels")
            for k, values in block["knobs"].items():
                check_knob_name(k, f, f"{where}.knobs.{k}")
                for i, v in enumerate(values):
                    check_knob_value(k, v, f, f"{where}.knobs.{k}[{i}]")
                normalised = [normalise_knob(k, v) for v in values]
                if len({K.format_value(v) for v in normalised}) != len(values):
                    raise ConfigError(f, f"{where}.knobs.{k}", "repeated level", "distinct levels")
                swept.add(k)
        for k, v in (block.get("fixed") or {}).items():
            check_knob_value(k, v, f, f"{where}.fixed.{k}")
        ffb = block.get("fixed_from_block")
        fixed_here = set(block.get("fixed") or {})
        if ffb:
            if ffb["block"] not in seen_blocks:
                raise ConfigError(f, f"{where}.fixed_from_block.block",
                                  f"'{ffb['block']}' is not an earlier block of this round",
                                  ", ".join(seen_blocks) or "no earlier block")
            for j, k in enumerate(ffb["knobs"]):
                check_knob_name(k, f, f"{where}.fixed_from_block.knobs[{j}]")
            fixed_here |= set(ffb["knobs"])
        clash = sorted(fixed_here & swept)
        if clash:
            raise ConfigError(f, f"{where}", f"block '{block['name']}' fixes knob(s) {clash} "
                              "that it also sweeps", "fix a knob or sweep it, not both")
        seen_blocks.append(block["name"])
