"""Every declared knob (schemas/knobs.schema.yaml, `x-physweep`) against every consumer.

A knob is declared once; what cannot be derived from that declaration is checked here, knob by
knob, so adding a knob (docs/architecture.md, "Adding a knob") fails loudly until every consumer
has it: the config's defaults, the typed-config field it sets and that field's default, the
preset size rules and the preset schema, and the planner end to end (sweeping the knob changes
its column of the plan table and exactly its field of the run spec).
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import yaml

from physweep.configs import from_dict
from physweep.io import load_yaml
from physweep.model.corrector import CorrectorConfig
from physweep.model.surrogate import SurrogateConfig
from physweep.plan import knobs as K
from physweep.plan.config import load_workflow_config
from physweep.plan.round import plan_round
from physweep.plan.schema import check_knob_value, load_schema
from physweep.plan.sizes import effective_size, effective_value
from physweep.plan.spec import build_spec, template
from physweep.plan.table import CELL_RULES, format_table, plan_records
from physweep.train import loop
from physweep.train.loop import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
PRESETS = sorted((ROOT / "config" / "presets").glob("*.yaml"))
#: the typed config each run-spec section is built into (as the trainer does)
SECTION_CLASSES = {"model": SurrogateConfig, "corrector": CorrectorConfig, "train": TrainConfig}
#: schema type of a knob -> the annotation of the typed-config field it sets
FIELD_TYPES = {"integer": int, "number": float, "boolean": bool}
#: the preset whose effective sizes the typed-config defaults are (the CPU demo)
DEFAULTS_PRESET = "demo"

KNOB_NAMES = list(K.REGISTRY)


def _preset(name_or_path) -> dict:
    path = name_or_path if isinstance(name_or_path, Path) else \
        ROOT / "config" / "presets" / f"{name_or_path}.yaml"
    return load_yaml(path.read_text())


def _field(cls, name: str) -> dataclasses.Field:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert name in fields, f"{cls.__name__} has no field {name!r}"
    return fields[name]


def test_the_trainer_builds_the_sections_into_these_classes():
    assert tuple(SECTION_CLASSES) == K.SECTIONS
    assert loop.MODEL_KINDS["upt"] is SurrogateConfig


@pytest.mark.parametrize("knob", KNOB_NAMES)
def test_declaration_is_complete_and_its_default_is_valid(knob):
    spec = load_schema("knobs")["properties"][knob]
    x = spec["x-physweep"]
    assert set(x) == {"tier", "sets", "effective", "stage"}
    d = K.REGISTRY[knob]
    assert d.tier in K.TIERS and d.section in K.SECTIONS and d.effective in K.EFFECTIVE
    assert d.stage in K.STAGES and f"{d.section}.{d.field}" == x["sets"]
    check_knob_value(knob, spec["default"], "knobs.schema.yaml", f"properties.{knob}.default")
    assert spec.get("description"), "say what the knob does"
    if d.size_mapped:
        assert spec.get("type") == "integer", "a size is an integer"


@pytest.mark.parametrize("knob", KNOB_NAMES)
def test_config_default_is_the_declared_default(knob, wcfg):
    shipped = load_yaml((ROOT / "config" / "config.yaml").read_text()).get("knobs") or {}
    if knob in shipped:  # the shipped config.yaml overrides nothing: it would hide the default
        assert K.same_value(K.normalise(knob, shipped[knob]), K.REGISTRY[knob].default)
    assert K.same_value(wcfg.config["knobs"][knob], K.REGISTRY[knob].default)
    assert list(wcfg.config["knobs"]) == KNOB_NAMES


@pytest.mark.parametrize("knob", KNOB_NAMES)
def test_knob_sets_an_existing_typed_field_of_its_type(knob):
    d = K.REGISTRY[knob]
    cls = SECTION_CLASSES[d.section]
    _field(cls, d.field)
    hint = typing.get_type_hints(cls)[d.field]
    kind = d.schema.get("type")
    want = FIELD_TYPES[kind] if kind else str  # an enum of names is a str field
    assert hint is want, f"{cls.__name__}.{d.field} is {hint}, the knob is {kind or 'an enum'}"
    others = [k for k, o in K.REGISTRY.items() if (o.section, o.field) == (d.section, d.field)]
    assert others == [knob], f"{d.section}.{d.field} is set by several knobs: {others}"


@pytest.mark.parametrize("knob", KNOB_NAMES)
def test_typed_config_default_follows_the_rule(knob):
    """The rule: a typed-config field a knob sets defaults to the value a demo-preset run of the
    knob's default gets for a size-mapped knob (the dataclasses default to the CPU demo's
    sizes: SurrogateConfig "defaults: the small CPU demo"), and to the knob's nominal default
    for every other knob (the playbook's value; lr and ema: the value at the playbook's scale,
    where the LR is not rescaled and the EMA window is the nominal one)."""
    d = K.REGISTRY[knob]
    cls = SECTION_CLASSES[d.section]
    f = _field(cls, d.field)
    assert f.default is not dataclasses.MISSING, f"{cls.__name__}.{d.field} has no default"
    if d.size_mapped:
        want = effective_size(_preset(DEFAULTS_PRESET), knob, d.default)
        where = f"the {DEFAULTS_PRESET} preset's effective {knob} for the default {d.default}"
    else:
        want, where = d.default, "the declared default"
    assert K.same_value(f.default, want), f"{cls.__name__}.{d.field} = {f.default!r}, {where} is {want!r}"


@pytest.mark.parametrize("knob", KNOB_NAMES)
def test_size_rule_in_every_preset_and_in_the_preset_schema(knob):
    d = K.REGISTRY[knob]
    sizes = load_schema("preset")["properties"]["sizes"]
    if not d.size_mapped:
        assert knob not in sizes["properties"] or d.effective == "lr", \
            f"the preset schema has a size rule for {knob}, which is not size-mapped"
        return
    assert knob in sizes["properties"] and knob in sizes["required"]
    for path in PRESETS:
        preset = _preset(path)
        assert knob in preset["sizes"], f"{path.name} has no sizes.{knob}"
        effective_size(preset, knob, d.default, path.name)  # the default maps


def test_preset_schema_size_rules_are_knobs_or_compute():
    props = set(load_schema("preset")["properties"]["sizes"]["properties"])
    lr_scale = {k for k, d in K.REGISTRY.items() if d.effective == "lr"}
    assert props - {"batch_tokens", "budget_steps"} - lr_scale == set(K.SIZE_KNOBS)


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_no_preset_sets_a_knob(path):
    """The precedence rule: a preset's fixed settings never set a knob's field (the knob
    decides, at every preset), and the preset schema does not offer them."""
    preset = _preset(path)
    schema = load_schema("preset")["properties"]
    for name, d in K.REGISTRY.items():
        assert d.field not in preset[d.section], f"{path.name} sets {d.section}.{d.field} ({name})"
        assert d.field not in schema[d.section]["properties"], \
            f"preset.schema.yaml offers {d.section}.{d.field}, which knob {name} sets"


def _other_level(knob: str, preset: dict):
    """A valid level of ``knob`` other than its default (a size the preset maps)."""
    d = K.REGISTRY[knob]
    s, v = d.schema, d.default
    if "enum" in s:
        return next(e for e in s["enum"] if e != v)
    if s.get("type") == "boolean":
        return not v
    if d.size_mapped:
        rule = preset["sizes"][knob]
        return next(int(n) for n in rule["map"] if int(n) != v) if "map" in rule else v * 2
    if s.get("type") == "integer":
        return v + 1 if v + 1 <= s.get("maximum", v + 1) else v - 1
    return v / 2 if v else 1.0


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """One round per knob that sweeps it over (default, another level); the config's rounds."""
    root = tmp_path_factory.mktemp("knob_rounds")
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    preset = _preset(config["preset"])
    for knob in KNOB_NAMES:
        levels = [K.REGISTRY[knob].default, _other_level(knob, preset)]
        check_knob_value(knob, levels[1], "test", knob)
        (root / f"sweep_{knob}.yaml").write_text(yaml.safe_dump({
            "name": f"sweep_{knob}", "objective": "nrmse", "declares": ["horizon"],
            "blocks": [{"name": "sweep", "design": {"type": "grid"}, "knobs": {knob: levels}}]}))
    config["rounds_dir"] = str(root)
    return load_workflow_config(config, ROOT)


@pytest.mark.parametrize("knob", KNOB_NAMES)
def test_sweeping_a_knob_changes_its_table_column_and_only_its_spec_field(knob, swept):
    d = K.REGISTRY[knob]
    plan = plan_round(swept, f"sweep_{knob}")
    assert plan.varied == [knob]
    table = format_table(swept, plan)
    header = next(line for line in table.splitlines() if line.startswith("run "))
    assert f" {knob} " in header, f"no plan-table column for {knob}"
    for other in KNOB_NAMES:
        if other != knob:
            assert f"{other}=" in table, f"{other} missing from the table's common values"
    records = plan_records(swept, plan)
    for r in records["runs"]:
        assert knob in r["nominal"]
        assert (knob in r["effective"]) == (d.effective in CELL_RULES)

    (swept_run,) = [r for r in plan.runs if not r.is_baseline]  # the default level: baseline
    sections = {}
    for run in (plan.run("baseline"), swept_run):
        spec = build_spec(template(swept, plan, run))
        want = effective_value(swept.preset, knob, run.values[knob], swept.config["compute"],
                               run.batch_tokens, str(swept.preset_file))
        assert K.same_value(spec[d.section][d.field], want), (run.name, spec[d.section])
        for sec, cls in SECTION_CLASSES.items():
            cfg = from_dict(cls, spec[sec], where=f"run spec {run.name} {sec}")  # as the trainer
            if sec == d.section:
                assert K.same_value(getattr(cfg, d.field), want)
        sections[run.name] = {sec: spec[sec] for sec in SECTION_CLASSES}
    base, other = sections["baseline"], sections[swept_run.name]
    diff = {(sec, f) for sec in SECTION_CLASSES for f in base[sec] | other[sec]
            if base[sec].get(f) != other[sec].get(f)}
    assert diff == {(d.section, d.field)}, f"sweeping {knob} changed {sorted(diff)} of the spec"


def test_a_preset_that_sets_a_knob_is_refused(tmp_path, base_config):
    """weight_decay was a preset train setting; now a knob, a preset setting it is refused with
    where to set the knob instead (the knob decides, the same at every preset)."""
    from physweep.plan.errors import ConfigError

    preset = _preset("demo")
    preset["train"]["weight_decay"] = 0.05
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(preset))
    base_config["presets_dir"] = str(tmp_path)
    with pytest.raises(ConfigError, match=r"train\.weight_decay.*knob 'weight_decay'.*fixed"):
        load_workflow_config(base_config, ROOT)
