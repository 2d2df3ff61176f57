"""The playbook's rounds A-D are encoded exactly; plans have the claimed structure."""

import pytest

from physweep.plan.round import Pending, plan_round
from physweep.plan.spec import build_spec, template
from physweep.plan.workflow import Workflow


def _names(plan):
    return [r.name for r in plan.runs]


def test_round_a_grid_plus_cadence(wcfg):
    plan = plan_round(wcfg, "round_a")
    grid = [r for r in plan.runs if "optimizer" in r.blocks]
    assert len(grid) == 9  # 3x3 LR x warmup, the baseline (3e-4, 0.05) among them
    assert {(r.values["lr"], r.values["warmup"]) for r in grid} == {
        (lr, w) for lr in (2e-4, 3e-4, 4.5e-4) for w in (0.03, 0.05, 0.06)}
    assert all(r.values["ema"] == 0.9995 for r in plan.runs)
    cadence = [r for r in plan.runs if r.block == "cadence"]
    assert sorted(r.values["cadence"] for r in cadence) == [8, 32]
    # cadence 16 at the best LR/warmup is the grid winner itself: one run, not two
    assert [a.swept for a in plan.aliases] == [{"cadence": 16}]
    for r in cadence:
        assert r.values["lr"] == Pending("block", "optimizer")
        assert r.pending_sources == ["block:optimizer"]
    assert plan.baseline == ["baseline", "baseline_seed~1", "baseline_seed~2"]
    assert len(plan.runs) == 13
    assert "lr~4.5e-4_warmup~0.06" in _names(plan)


def test_round_b_blocks_at_round_a_winner(wcfg):
    plan = plan_round(wcfg, "round_b")
    assert plan.inherits == ["round_a"]
    corr = [r for r in plan.runs if "corrector" in r.blocks]
    assert {(r.values["guidance"], r.values["steps"]) for r in corr} == {
        (g, s) for g in (0.5, 1.0, 1.5) for s in (1, 2)}
    assert all(r.values["cadence"] == 16 for r in plan.runs)
    inv = [r for r in plan.runs if "inverse" in r.blocks]
    assert {(r.values["inverse_encode"], r.values["inverse_decode"]) for r in inv} == {
        (0.25, 0.25), (0.5, 0.5), (0.75, 0.75)}
    proj = [r for r in plan.runs if "projection" in r.blocks]
    assert sorted(r.values["projection_weight"] for r in proj) == [0.5, 1.0, 2.0]
    assert all(r.values["lr"] == Pending("round", "round_a") for r in plan.runs)


def test_round_b_uses_known_winner_values(wcfg):
    plan = plan_round(wcfg, "round_b", winners={"round:round_a": {"lr": 4.5e-4, "warmup": 0.03,
                                                                  "ema": 0.9995}})
    assert all(r.values["lr"] == 4.5e-4 for r in plan.runs)


@pytest.mark.parametrize(("tight", "n_capacity"), [(False, 9), (True, 6)])
def test_round_c_capacity_grid_or_balanced_fraction(wcfg, tight, n_capacity):
    wcfg.config["tight_designs"] = tight
    plan = plan_round(wcfg, "round_c")
    cap = [r for r in plan.runs if "capacity" in r.blocks]
    assert len(cap) == n_capacity
    for knob in ("model_dim", "window_size"):
        counts = {}
        for r in cap:
            counts[r.values[knob]] = counts.get(r.values[knob], 0) + 1
        assert len(set(counts.values())) == 1 and len(counts) == 3  # balanced
    latent = {r.values["latent_tokens"]: r for r in plan.runs if "latent" in r.blocks}
    assert sorted(latent) == [384, 512, 768]
    # memory kept fixed: fewer samples per step with more latent tokens, LR rescaled linearly
    assert latent[768].batch_tokens < latent[512].batch_tokens < latent[384].batch_tokens
    assert "depth" not in plan.varied


def test_round_d_curriculum_and_lhs(wcfg):
    plan = plan_round(wcfg, "round_d")
    cur = [r for r in plan.runs if "curriculum" in r.blocks]
    assert {(r.values["max_horizon"], r.values["freeze_bottom_layers_on_expand"]) for r in cur} == {
        (h, f) for h in (16, 32, 48) for f in (False, True)}
    samp = [r for r in plan.runs if "sampler" in r.blocks]
    assert sorted(r.values["sampler_temp"] for r in samp) == [0.6, 0.7, 0.8]
    assert sorted(r.values["max_horizon"] for r in samp) == [16, 32, 48]


def test_identical_runs_across_blocks_are_one_run(wcfg):
    for name in wcfg.rounds:
        plan = plan_round(wcfg, name)
        names = _names(plan)
        assert len(names) == len(set(names))
        keys = [tuple(sorted((k, str(v)) for k, v in r.values.items())) + (r.seed, r.batch_tokens)
                for r in plan.runs]
        assert len(keys) == len(set(keys))


def test_spec_maps_nominal_to_effective_and_scales_lr(wcfg):
    plan = plan_round(wcfg, "round_c", winners={"round:round_b": {
        "lr": 3e-4, "warmup": 0.05, "ema": 0.9995, "cadence": 16, "steps": 2, "guidance": 1.0,
        "inverse_encode": 0.5, "inverse_decode": 0.5, "projection_weight": 1.0}})
    base = build_spec(template(wcfg, plan, plan.run("baseline")))
    big = build_spec(template(wcfg, plan, plan.run("latent_tokens~768")))
    assert base["model"]["model_dim"] == 48 and base["model"]["latent_tokens"] == 64
    assert big["model"]["latent_tokens"] == 96
    ratio = big["train"]["batch_tokens"] / base["train"]["batch_tokens"]
    assert big["train"]["lr"] == pytest.approx(base["train"]["lr"] * ratio)
    # the demo preset's LR scale (sizes.lr.scale) multiplies the nominal LR: 3e-4 -> 1e-3
    lr_scale = wcfg.preset["sizes"]["lr"]["scale"]
    assert base["train"]["lr"] == pytest.approx(3e-4 * lr_scale) and lr_scale > 1
    assert big["train"]["budget_tokens"] == base["train"]["budget_tokens"]  # same compute
    assert base["train"]["batch_tokens"] % base["train"]["points_per_sample"] == 0


def test_pending_template_resolves_from_winner_files(wcfg):
    plan = plan_round(wcfg, "round_a")
    tpl = template(wcfg, plan, plan.run("cadence~8"))
    with pytest.raises(ValueError, match="winner of block:optimizer"):
        build_spec(tpl)
    spec = build_spec(tpl, {"block:optimizer": {"lr": 4.5e-4, "warmup": 0.03}})
    assert spec["nominal"]["lr"] == 4.5e-4 and spec["corrector"]["cadence"] == 2


def test_workflow_constraints_admit_run_names_and_the_plan_refuses_unknown_ones(wcfg):
    import re

    wf = Workflow(wcfg)
    pat = re.compile(f"^(?:{wf.run_regex})$")
    for name in wf.run_names("round_a") + wf.run_names("round_d"):
        assert pat.match(name), name
    for bad in ("../etc", "a/b", ".hidden", "", "lr 2e-4"):
        assert not pat.match(bad), bad
    # right shape, not planned: the input functions refuse it by name
    assert pat.match("lr~2e-4_warmup~0.04")
    with pytest.raises(KeyError, match="round round_a has no run 'lr~2e-4_warmup~0.04'"):
        wf.run_template("round_a", "lr~2e-4_warmup~0.04")


def test_ema_window_scales_with_the_budget(wcfg):
    plan = plan_round(wcfg, "round_a")
    spec = build_spec(template(wcfg, plan, plan.run("baseline")))
    steps = spec["train"]["budget_tokens"] // spec["train"]["batch_tokens"]
    # same averaging window as a fraction of training: (1 - ema_eff) * steps == (1 - ema) * 20000
    assert spec["train"]["ema"] == pytest.approx(0.9995 ** (20000 / steps))
    assert (1 - spec["train"]["ema"]) * steps == pytest.approx((1 - 0.9995) * 20000, rel=0.1)


def test_runs_identical_at_the_probe_are_flagged(base_config, repo_root):
    """Round D with the horizon map {16: 2, 32: 4, 48: 6}: with 3 curriculum stages over 500
    steps the probe (step 175) falls in stage 2, where max_horizon 16 and 32 (effective 2 and 4)
    both train at horizon 2. (The demo map {16: 4, 32: 6, 48: 8} trains 2, 4, 4 there.)"""
    import dataclasses

    from physweep.plan.config import load_workflow_config

    def twins(config, stages=None):
        wcfg = load_workflow_config(config, repo_root)
        sizes = {**wcfg.preset["sizes"], "max_horizon": {"map": {16: 2, 32: 4, 48: 6}}}
        train = dict(wcfg.preset["train"])
        if stages is not None:
            train["curriculum_stages"] = stages
        wcfg = dataclasses.replace(wcfg, preset={**wcfg.preset, "sizes": sizes, "train": train})
        return [w for w in plan_round(wcfg, "round_d").warnings if "identically" in w]

    found = twins(base_config)
    assert len(found) == 2
    assert any("max_horizon~16_freeze_bottom_layers_on_expand~false, "
               "max_horizon~32_freeze_bottom_layers_on_expand~false" in w for w in found)
    assert all("step 175 of 500" in w for w in found)
    # a probe after the last expansion separates every run
    later = {**base_config, "early_stop": {**base_config["early_stop"], "probe_fraction": 0.7}}
    assert twins(later) == []
    # one stage: the horizons differ from the start, but nothing ever expands, so freezing
    # never acts and each freeze true/false pair is flagged
    single = twins(base_config, stages=1)
    assert len(single) == 3 and all("freeze_bottom_layers_on_expand~false" in w for w in single)


def test_early_stopping_can_be_switched_off_per_config_or_per_round(base_config, repo_root):
    """`early_stop.enabled: false` (config) or a round's `early_stop: {enabled: false}` makes an
    exhaustive round: the plan counts every training to the end."""
    import dataclasses

    from physweep.plan.config import load_workflow_config
    from physweep.plan.table import compute_summary, compute_text

    wcfg = load_workflow_config(base_config, repo_root)
    on = plan_round(wcfg, "round_a")
    assert on.early_stop
    s_on = compute_summary(wcfg, on)
    assert s_on["budget_units_min"] < s_on["budget_units_max"]
    off_cfg = {**base_config, "early_stop": {**base_config["early_stop"], "enabled": False}}
    wcfg_off = load_workflow_config(off_cfg, repo_root)
    off = plan_round(wcfg_off, "round_a")
    assert not off.early_stop
    s_off = compute_summary(wcfg_off, off)
    assert s_off["budget_units_min"] == s_off["budget_units_max"] == s_on["budget_units_max"]
    assert "early stopping is off" in compute_text(s_off)
    # the round's own setting wins over the config's
    rounds = dict(wcfg_off.rounds)
    rounds["round_a"] = {**rounds["round_a"], "early_stop": {"enabled": True}}
    assert plan_round(dataclasses.replace(wcfg_off, rounds=rounds), "round_a").early_stop
