"""Plan-time refusals and guards (issue #13), one section per item: each is refused or reported
before any job runs, naming the file, the key and what is allowed."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from snakerun import snakemake

from physweep import cli
from physweep.io import load_yaml
from physweep.plan import designs as D
from physweep.plan.config import load_workflow_config
from physweep.plan.errors import ConfigError, ConfigErrors, UnknownRunError
from physweep.plan.round import plan_round
from physweep.plan.table import format_table, plan_records
from physweep.plan.workflow import Workflow

ROOT = Path(__file__).resolve().parents[2]

FIVE_TWO_LEVEL = """\
name: round_x
objective: nrmse
blocks:
  - name: screen
    design: {type: fractional, runs: 8}
    knobs:
      lr: [2e-4, 4e-4]
      warmup: [0.03, 0.06]
      sampler_temp: [0.6, 0.8]
      guidance: [0.5, 1.5]
      projection_weight: [0.5, 2.0]
"""


def _tree(tmp_path: Path, extra: dict[str, str] | None = None) -> Path:
    """A copy of config/ with ``extra`` round files (name -> text) added; returns the config."""
    for sub in ("rounds", "presets"):
        shutil.copytree(ROOT / "config" / sub, tmp_path / "config" / sub)
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg.update(rounds_dir=str(tmp_path / "config" / "rounds"),
               presets_dir=str(tmp_path / "config" / "presets"))
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    for name, text in (extra or {}).items():
        (tmp_path / "config" / "rounds" / f"{name}.yaml").write_text(text)
    return tmp_path / "config" / "config.yaml"


def _wcfg(configfile: Path, **overrides):
    cfg = load_yaml(configfile.read_text())
    cfg.update(overrides)
    return load_workflow_config(cfg, ROOT, str(configfile))


# ---- 1. fractional designs over two-level knobs


def test_five_two_level_knobs_in_8_runs_plan_quickly_at_resolution_iii(tmp_path, capsys):
    configfile = _tree(tmp_path, {"round_x": FIVE_TWO_LEVEL})
    t0 = time.perf_counter()
    assert cli.main(["plan", "round_x", "--configfile", str(configfile)]) == 0
    elapsed = time.perf_counter() - t0
    assert elapsed < 30, f"planning took {elapsed:.1f} s"  # ~1 s; the old search took 10 min
    text = capsys.readouterr().out

    plan = plan_round(_wcfg(configfile), "round_x")
    (design,) = plan.designs
    assert design["runs"] == 8 and design["full"] == 32
    assert design["resolution"] == "III" and design["regular"]
    runs = [r for r in plan.runs if "screen" in r.blocks]
    assert len(runs) == 8
    names = list(design["levels"])
    signs = np.array([[1 if r.values[k] == max(r.values[k] for r in runs) else -1 for k in names]
                      for r in runs])
    assert (signs.sum(axis=0) == 0).all()  # balanced: every level in 4 runs
    assert (signs.T @ signs == 8 * np.eye(5)).all()  # orthogonal main-effect columns
    # resolution III: some main effect is one of the two-factor interactions' columns
    assert design["aliases"] and all(" x " in a for a in design["aliases"])
    main, *interactions = design["aliases"][0].split(" = ")
    a, b = interactions[0].split(" x ")
    col = names.index
    assert (signs[:, col(main)] == signs[:, col(a)] * signs[:, col(b)]).all() or \
        (signs[:, col(main)] == -signs[:, col(a)] * signs[:, col(b)]).all()
    assert design["generators"] and design["defining_relation"]
    # printed by `physweep plan` and stored in plan.json for the report
    assert "resolution III" in text and "main effects aliased with two-factor interactions" in text
    assert design["aliases"][0] in text
    assert plan_records(_wcfg(configfile), plan)["designs"][0]["aliases"] == design["aliases"]


def test_regular_fractions_take_the_highest_resolution():
    for k, runs, res in [(4, 8, "IV"), (5, 16, "V"), (6, 16, "IV"), (7, 16, "IV"), (8, 16, "IV"),
                         (6, 32, "VI"), (8, 64, "V"), (7, 8, "III")]:
        gen = D.regular_generators(k, runs)
        rows = D.fractional_2level([2] * k, gen)
        assert len(set(rows)) == runs and D.is_balanced(rows, [2] * k)
        assert D.alias_structure(rows, [2] * k, gen).resolution == res, (k, runs, gen)


def test_mixed_level_search_is_bounded_and_lists_what_exists():
    # the search stops at SEARCH_SECONDS (2 s); the bound below leaves room for a loaded CI
    # machine and still fails the unbounded search it replaced (10 minutes)
    bound = 10 * D.SEARCH_SECONDS
    t0 = time.perf_counter()
    with pytest.raises(D.DesignError) as exc:
        D.balanced_fraction([3, 3, 3, 3, 3, 3], 24)  # a multiple of 3, none found
    assert time.perf_counter() - t0 < bound
    assert 18 in exc.value.allowed and 27 in exc.value.allowed  # L18, L27 projections
    t0 = time.perf_counter()
    rows = D.balanced_fraction([3, 3, 3, 3], 9)  # the L9 orthogonal array
    assert time.perf_counter() - t0 < bound
    assert len(rows) == 9 and D.is_balanced(rows, [3] * 4)
    assert D.main_effects_estimable(rows, [3] * 4)
    assert D.alias_structure(rows, [3] * 4).resolution == "III"


def test_fractions_report_aliases_in_round_c_tight_design(wcfg):
    wcfg.config["tight_designs"] = True
    capacity = next(d for d in plan_round(wcfg, "round_c").designs if d["block"] == "capacity")
    assert capacity["runs"] == 6 and capacity["resolution"] == "III"
    assert any("partly aliased with model_dim x window_size" in a for a in capacity["aliases"])


def test_report_effects_section_lists_the_design_aliases():
    from physweep.report.effects import design_notes

    notes = design_notes([{"block": "screen", "type": "fractional", "runs": 8, "full": 32,
                           "resolution": "III", "aliases": ["a = b x c"]},
                          {"block": "grid", "type": "grid", "runs": 9}])
    assert notes == ["Block screen: fraction of 8 of 32 runs, resolution III: a = b x c."]


def test_plan_table_lists_every_block_design(wcfg):
    for name in wcfg.rounds:
        plan = plan_round(wcfg, name)
        text = format_table(wcfg, plan)
        assert "designs:" in text and all(f"  {b}: " in text for b in plan.blocks)


# ---- 2. numbers as YAML writes them


@pytest.mark.parametrize(("text", "value"), [("3e-4", 3e-4), ("1e5", 1e5), (".5", 0.5),
                                             ("-.5", -0.5), ("1.0e5", 1e5), ("+1e3", 1e3),
                                             ("12", 12), ("1e", "1e"), ("1.2.3", "1.2.3")])
def test_yaml_numbers(text, value):
    assert load_yaml(f"v: {text}")["v"] == value
    assert type(load_yaml(f"v: {text}")["v"]) is type(value)


def test_round_file_with_exponent_numbers_plans_with_floats(tmp_path):
    rnd = """\
name: round_e
objective: nrmse
blocks:
  - name: optimizer
    design: {type: grid}
    knobs: {lr: [3e-4, 1e-3]}
"""
    plan = plan_round(_wcfg(_tree(tmp_path, {"round_e": rnd})), "round_e")
    lrs = sorted(r.values["lr"] for r in plan.runs)
    assert all(isinstance(v, float) for v in lrs)
    assert lrs == [3e-4, 3e-4, 3e-4, 1e-3]  # three baseline replicates at the default 3e-4


def test_numbers_as_strings_from_snakemake_become_numbers(base_config, repo_root):
    # Snakemake reads config.yaml with YAML 1.1 (`lr: 3e-4` is a string) and --config values
    # like 'knobs={lr: 1e-4}' with a loader that returns strings
    base_config["knobs"].update(lr="1e-4", cadence="16", u_shape="false")
    base_config["compute"]["budget_steps"] = "2.5e3"  # a whole number written as a float
    base_config["max_runs"] = 1e3
    wcfg = load_workflow_config(base_config, repo_root)
    assert wcfg.config["knobs"]["lr"] == 1e-4 and wcfg.config["knobs"]["cadence"] == 16
    assert wcfg.config["knobs"]["u_shape"] is False
    assert wcfg.config["compute"]["budget_steps"] == 2500 and wcfg.config["max_runs"] == 1000
    assert type(wcfg.config["max_runs"]) is int
    base_config["compute"]["budget_steps"] = "2.5"  # not a whole number: refused
    with pytest.raises(ConfigErrors, match="budget_steps"):
        load_workflow_config(base_config, repo_root)


def test_cli_overrides_read_numbers_and_merge_sections(capsys):
    assert cli.main(["plan", "round_a", "--json", "--config", "knobs={lr: 1e-4}"]) == 0
    import json

    (plan,) = json.loads(capsys.readouterr().out)
    base = next(r for r in plan["runs"] if r["run"] == "baseline")
    assert base["nominal"]["lr"] == 1e-4 and base["nominal"]["warmup"] == 0.05


# ---- 3. the round graph


def test_unknown_round_lists_the_known_ones(capsys):
    assert cli.main(["plan", "round_zz"]) == 2
    err = capsys.readouterr().err
    assert "unknown round 'round_zz'" in err and "round_a, round_b, round_c, round_d" in err
    assert "Traceback" not in err


def test_broken_round_file_does_not_stop_unrelated_rounds(tmp_path, capsys):
    configfile = _tree(tmp_path)
    (tmp_path / "config" / "rounds" / "round_c.yaml").write_text("name: round_c\nblocks: [\n")
    wcfg = _wcfg(configfile)
    assert sorted(wcfg.rounds) == ["round_a", "round_b"]
    assert any("round_c.yaml" in w for w in wcfg.warnings)
    assert len(plan_round(wcfg, "round_b").runs) > 3  # unrelated: plans
    with pytest.raises(ConfigErrors) as exc:  # needs round_c's winners
        plan_round(wcfg, "round_d")
    assert "round_d.yaml" in str(exc.value) and "round_c.yaml" in str(exc.value)
    assert "not valid YAML" in str(exc.value)
    wf = Workflow(wcfg)  # the workflow plans the sound rounds and keeps the others' errors
    assert sorted(wf.rounds) == ["round_a", "round_b"] and sorted(wf.broken) == ["round_c",
                                                                                  "round_d"]
    assert "not valid YAML" in str(wf.broken["round_d"])

    assert cli.main(["plan", "round_a", "--configfile", str(configfile)]) == 0
    out = capsys.readouterr()
    assert "round_a: Make it train beautifully" in out.out
    assert "warning" in out.err and "round_c.yaml" in out.err
    assert cli.main(["plan", "round_d", "--configfile", str(configfile)]) == 2
    err = capsys.readouterr().err
    assert "round_c.yaml" in err and "Traceback" not in err


# ---- 4. the size guard and what a round costs


def test_plan_prints_training_jobs_and_compute(capsys, wcfg, tmp_path):
    # an empty results tree: no winner known yet (a finished round A in the checkout would let
    # the plan resolve the cadence block's values and share one more training)
    assert cli.main(["plan", "round_a", "--config", f"results_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    # 13 runs on 12 trainings (cadence~8 and cadence~32 differ only in the evaluation-time
    # cadence): 12 probe trainings + 3..12 continuations; 3 baselines x 1 + 9 x 0.35 = 6.15 units
    assert "trainings: 12 distinct for 13 runs" in out and "cadence~8 = cadence~32" in out
    assert "training jobs: 15-24" in out
    assert "compute: 6.15-12 budget units" in out and "without sharing 6.5-13" in out
    summary = plan_records(wcfg, plan_round(wcfg, "round_a"))["compute"]
    assert summary["budget_units_min"] == pytest.approx(6.15) and summary["budget_units_max"] == 12
    assert summary["budget_units_unshared_min"] == pytest.approx(6.5)
    assert summary["shared"] == [["cadence~8", "cadence~32"]]


def test_plan_shows_which_runs_share_a_training(capsys, wcfg):
    """Round B's guidance x steps grid is 6 runs on 2 trainings (steps is read by the denoiser
    loss, guidance only by rollouts); the baseline trains what guidance~0.5/1.5 at steps 2 do."""
    assert cli.main(["plan", "round_b"]) == 0
    out = capsys.readouterr().out
    assert "trainings: 8 distinct for 12 runs" in out
    records = plan_records(wcfg, plan_round(wcfg, "round_b"))
    training = {r["run"]: r["training"] for r in records["runs"]}
    grid = [r for r in training if r.startswith("guidance~")]
    assert len(grid) == 5 and len({training[r] for r in grid}) == 2  # guidance~1.0_steps~2: baseline
    assert training["baseline"] == training["guidance~0.5_steps~2"]
    assert len({training[r] for r in ("baseline", "baseline_seed~1", "baseline_seed~2")}) == 3


def test_max_runs_is_the_limit(tmp_path):
    configfile = _tree(tmp_path)
    assert len(plan_round(_wcfg(configfile, max_runs=13), "round_a").runs) == 13
    with pytest.raises(ConfigError, match="max_runs=13"):
        plan_round(_wcfg(configfile, max_runs=12), "round_a")


def test_huge_grid_is_refused_before_it_is_built(tmp_path):
    levels = {k: [0.1 + 0.01 * i for i in range(20)] for k in ("warmup", "sampler_temp")}
    levels.update(lr=[1e-4 * (i + 1) for i in range(20)], guidance=[0.1 * i for i in range(20)])
    rnd = {"name": "round_h", "objective": "nrmse",
           "blocks": [{"name": "huge", "design": {"type": "grid"}, "knobs": levels}]}
    configfile = _tree(tmp_path, {"round_h": yaml.safe_dump(rnd)})
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="has 160000 runs, more than max_runs"):
        plan_round(_wcfg(configfile), "round_h")
    assert time.perf_counter() - t0 < 10  # refused before 160,000 runs are built


# ---- 5. unknown run names in targets


def test_unknown_run_names_the_nearest_planned(wcfg):
    wf = Workflow(wcfg)
    with pytest.raises(UnknownRunError) as exc:
        wf.run_template("round_a", "lr~2e-4_warmup~0.04")
    msg = str(exc.value)
    assert "\n" not in msg and "round_a.yaml" in msg
    assert "nearest planned: lr~2e-4_warmup~0.0" in msg


def test_snakemake_target_with_unknown_run_is_one_line(tmp_path):
    proc = snakemake("-n", "results/round_a/runs/lr~2e-4_warmup~0.04/small_eval.nc",
                     cwd=tmp_path, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "round round_a has no run 'lr~2e-4_warmup~0.04'" in text
    line = next(s for s in text.splitlines() if "has no run" in s)
    assert "nearest planned: lr~2e-4_warmup~0.0" in line
    assert "Traceback" not in text and "Exception" not in text


def test_snakemake_target_with_unknown_training_is_one_line(tmp_path):
    proc = snakemake("-n", "results/round_a/trainings/0123456789ab/probe/checkpoint.pt",
                     cwd=tmp_path, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "round round_a has no training 0123456789ab" in text
    assert "Traceback" not in text and "Exception" not in text


# ---- 6. preset maps


def test_unmappable_level_names_round_block_and_preset_key(tmp_path):
    configfile = _tree(tmp_path)
    path = tmp_path / "config" / "rounds" / "round_c.yaml"
    data = yaml.safe_load(path.read_text())
    data["blocks"][0]["knobs"]["model_dim"] = [100]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError) as exc:
        plan_round(_wcfg(configfile), "round_c")
    msg = str(exc.value)
    assert "demo.yaml" in msg and "'sizes.model_dim.map'" in msg
    assert "round_c.yaml" in msg and "block 'capacity'" in msg
    assert "blocks[0].knobs.model_dim" in msg and "allowed: 320, 384, 448" in msg
