"""A battery of bad configs: each is refused at load/plan time, before any job runs, with its
own message naming the file, the key and what is allowed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from physweep.plan.config import load_workflow_config
from physweep.plan.errors import ConfigError, ConfigErrors
from physweep.plan.workflow import Workflow

ROOT = Path(__file__).resolve().parents[2]


def _tree(tmp_path: Path) -> Path:
    for sub in ("rounds", "presets"):
        shutil.copytree(ROOT / "config" / sub, tmp_path / "config" / sub)
    shutil.copy(ROOT / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    return tmp_path


def _edit(path: Path, fn) -> None:
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _load(root: Path):
    """The workflow of ``root``'s config; a round that cannot be planned raises its errors, as
    asking Snakemake for it does (other rounds still run: test_dry_run)."""
    cfg = yaml.safe_load((root / "config" / "config.yaml").read_text())
    wf = Workflow(load_workflow_config(cfg, root, str(root / "config" / "config.yaml")))
    if wf.broken:
        raise ConfigErrors(list(dict.fromkeys(
            e for errs in wf.broken.values() for e in errs.errors)))
    return wf


def _round(root, name="round_a"):
    return root / "config" / "rounds" / f"{name}.yaml"


def unknown_knob(root):
    _edit(_round(root), lambda d: d["blocks"][0]["knobs"].update(learning_rate=[1e-3]))


def wrong_type(root):
    _edit(_round(root), lambda d: d["blocks"][0]["knobs"].update(lr=["fast", 3e-4]))


def out_of_range(root):
    _edit(_round(root), lambda d: d.update(fixed={"ema": 1.5}))


def empty_design(root):
    _edit(_round(root), lambda d: d["blocks"][0].update(knobs={}))


def unbalanced_fraction(root):
    _edit(_round(root, "round_c"),
          lambda d: d["blocks"][0].update(design={"type": "fractional", "runs": 7}))


def two_toggles(root):
    _edit(_round(root), lambda d: d["blocks"][1]["knobs"].update(u_shape=[True, False]) or
          d["blocks"][1]["knobs"].update(norm=["layernorm", "rmsnorm"]))


def depth_and_model_dim(root):
    _edit(_round(root, "round_c"),
          lambda d: d["blocks"][1]["knobs"].update(depth=[20, 24, 28]) or
          d["blocks"][1].update(design={"type": "lhs", "runs": 3}))


def batch_without_lr_rule(root):
    _edit(_round(root, "round_c"), lambda d: d["blocks"][1]["compute"].pop("lr_scaling"))


def missing_round(root):
    _edit(_round(root, "round_b"), lambda d: d["inherit"][0].update(round="round_z"))


def duplicate_round(root):
    shutil.copy(_round(root), root / "config" / "rounds" / "round_a_copy.yaml")


def fixes_and_sweeps(root):
    _edit(_round(root), lambda d: d["blocks"][0].update(fixed={"lr": 3e-4}))


def top_level_typo(root):
    _edit(root / "config" / "config.yaml", lambda d: d.update(early_stp=d["early_stop"]))


def horizon_undeclared(root):
    _edit(_round(root, "round_d"), lambda d: d.pop("declares"))


def preset_missing_size(root):
    _edit(_round(root, "round_c"), lambda d: d["blocks"][0]["knobs"].update(model_dim=[320, 500]))


def bad_objective(root):
    _edit(_round(root), lambda d: d.update(objective="accuracy"))


def later_block_reference(root):
    _edit(_round(root), lambda d: d["blocks"][1]["fixed_from_block"].update(block="cadence"))


def unknown_preset(root):
    _edit(root / "config" / "config.yaml", lambda d: d.update(preset="huge"))


def short_full_eval(root):
    _edit(root / "config" / "presets" / "demo.yaml", lambda d: d["eval"]["full"].update(horizon=6))


def bad_data_key(root):
    _edit(root / "config" / "presets" / "demo.yaml", lambda d: d["data"].update(n_trian=12))


def inheritance_cycle(root):
    _edit(_round(root), lambda d: d.update(inherit=[{"round": "round_b", "knobs": ["steps"]}]))


def name_not_file_name(root):
    _edit(_round(root, "round_c"), lambda d: d.update(name="round_cc"))


def design_over_max_runs(root):
    levels = {"lr": [1e-4 * (i + 1) for i in range(8)], "warmup": [0.01 * (i + 1) for i in range(8)],
              "sampler_temp": [0.3 + 0.05 * i for i in range(8)]}  # 8^3 = 512 > 500
    _edit(_round(root), lambda d: d["blocks"][0].update(knobs=levels))


def round_over_max_runs(root):
    _edit(root / "config" / "config.yaml", lambda d: d.update(max_runs=12))  # round A: 13 runs


def two_level_fraction_size(root):
    knobs = {"lr": [2e-4, 4e-4], "warmup": [0.03, 0.06], "sampler_temp": [0.6, 0.8],
             "guidance": [0.5, 1.5], "projection_weight": [0.5, 2.0]}
    _edit(_round(root), lambda d: d["blocks"][0].update(
        knobs=knobs, design={"type": "fractional", "runs": 12}))


def preset_cannot_map_level(root):
    _edit(_round(root, "round_c"), lambda d: d["blocks"][0].update(
        knobs={"model_dim": [100]}, design={"type": "grid"}))


def no_grid_sample(root):
    _edit(root / "config" / "presets" / "demo.yaml", lambda d: d["train"].update(grid_samples=0))


def early_stop_not_a_bool(root):
    _edit(_round(root), lambda d: d.update(early_stop={"enabled": "sometimes"}))


BATTERY = [
    # (mutation, file that must be named, key that must be named, what must be said)
    (unknown_knob, "round_a.yaml", "blocks[0].knobs.learning_rate", "unknown knob"),
    (wrong_type, "round_a.yaml", "blocks[0].knobs.lr[0]", "wrong type"),
    (out_of_range, "round_a.yaml", "fixed.ema", "out of range"),
    (empty_design, "round_a.yaml", "blocks[0].knobs", "empty"),
    (unbalanced_fraction, "round_c.yaml", "blocks[0].design.runs", "balanced fraction of 7"),
    (two_toggles, "round_a.yaml", "blocks", "architectural toggles"),
    (depth_and_model_dim, "round_c.yaml", "blocks", "depth and model_dim"),
    (batch_without_lr_rule, "round_c.yaml", "blocks[1].compute", "without the LR rule"),
    (missing_round, "round_b.yaml", "inherit[0].round", "unknown round 'round_z'"),
    (duplicate_round, "round_a", "name", "duplicate round name"),
    (fixes_and_sweeps, "round_a.yaml", "blocks[0]", "fixes knob(s) ['lr'] that it also sweeps"),
    (top_level_typo, "config.yaml", "early_stp", "unknown key"),
    (horizon_undeclared, "round_d.yaml", "declares", "horizon"),
    (preset_missing_size, "demo.yaml", "sizes.model_dim.map", "no effective value"),
    (bad_objective, "round_a.yaml", "objective", "not allowed"),
    (later_block_reference, "round_a.yaml", "blocks[1].fixed_from_block.block", "earlier block"),
    (unknown_preset, "config.yaml", "preset", "no preset file"),
    (bad_data_key, "demo.yaml", "data", "n_trian"),
    (short_full_eval, "demo.yaml", "eval.full.horizon", "twice the training horizon"),
    (inheritance_cycle, "round_a.yaml", "inherit[0].round", "round_a -> round_b -> round_a"),
    (name_not_file_name, "round_c.yaml", "name", "'round_cc' differs from the file name"),
    (design_over_max_runs, "round_a.yaml", "blocks[0].design", "has 512 runs, more than max_runs"),
    (round_over_max_runs, "round_a.yaml", "blocks", "plans 13 runs"),
    (two_level_fraction_size, "round_a.yaml", "blocks[0].design.runs",
     "no regular two-level fraction of 12 runs"),
    (preset_cannot_map_level, "demo.yaml", "sizes.model_dim.map",
     "block 'capacity' of"),
    (early_stop_not_a_bool, "round_a.yaml", "early_stop.enabled", "wrong type"),
    (no_grid_sample, "demo.yaml", "train.grid_samples", "value 0 is out of range"),
]


@pytest.mark.parametrize(("mutate", "file", "key", "says"), BATTERY,
                         ids=[b[0].__name__ for b in BATTERY])
def test_bad_config_is_refused(tmp_path, mutate, file, key, says):
    root = _tree(tmp_path)
    mutate(root)
    with pytest.raises((ConfigError, ConfigErrors)) as exc:
        _load(root)
    msg = str(exc.value)
    assert file in msg, msg
    assert f"'{key}" in msg, msg
    assert says in msg, msg
    if not isinstance(exc.value, ConfigErrors) and exc.value.allowed is None:
        pytest.fail(f"no 'allowed' part in: {msg}")


def test_battery_messages_are_distinct(tmp_path):
    messages = set()
    for i, (mutate, *_rest) in enumerate(BATTERY):
        root = _tree(tmp_path / str(i))
        mutate(root)
        with pytest.raises((ConfigError, ConfigErrors)) as exc:
            _load(root)
        messages.add(str(exc.value))
    assert len(messages) == len(BATTERY)


def test_repository_config_is_valid():
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    wf = Workflow(load_workflow_config(cfg, ROOT))
    assert wf.rounds == ["round_a", "round_b", "round_c", "round_d"]
