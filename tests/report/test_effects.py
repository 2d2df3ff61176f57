import itertools
import math

import numpy as np
import pandas as pd
import pytest

from physweep.report.effects import estimate_effects, playbook_pairs

LR = [2e-4, 3e-4, 4.5e-4]
EMA = [0.999, 0.9995, 0.9999]
LR_EFFECT = {2e-4: -0.10, 3e-4: 0.0, 4.5e-4: 0.10}
EMA_EFFECT = {0.999: 0.05, 0.9995: 0.0, 0.9999: -0.05}


def _grid(reps=2, interaction=0.0, noise=0.005, seed=0):
    """3x3 lr x ema grid, `reps` replicates; interaction only at (4.5e-4, 0.9999)."""
    rng = np.random.default_rng(seed)
    rows = []
    for lr, ema, _ in itertools.product(LR, EMA, range(reps)):
        y = 0.5 + LR_EFFECT[lr] + EMA_EFFECT[ema]
        if lr == 4.5e-4 and ema == 0.9999:
            y += interaction
        rows.append({"lr": lr, "ema": ema, "warmup": 0.05, "y": y + noise * rng.normal()})
    return pd.DataFrame(rows)


def test_recovers_main_effects_without_interaction():
    res = estimate_effects(_grid(), ["lr", "ema", "warmup"], "y")
    assert res.factors == ["lr", "ema"] and res.fixed == {"warmup": 0.05}
    # effects are relative to the mean over levels: the known ones are already centred
    for lv, eff in LR_EFFECT.items():
        assert res.effect("lr", lv) == pytest.approx(eff, abs=0.01)
    for lv, eff in EMA_EFFECT.items():
        assert res.effect("ema", lv) == pytest.approx(eff, abs=0.01)
    assert res.p_value("lr") < 1e-6 and res.p_value("ema") < 1e-6
    assert ("lr", "ema") in res.interactions
    assert res.p_value("lr:ema") > 0.01  # no interaction in the data
    # the playbook pairs this round does not vary are reported, not plotted
    assert any("window_size x model_dim" in n and "not swept" in n for n in res.notes)


def test_recovers_known_interaction():
    res = estimate_effects(_grid(interaction=0.2), ["lr", "ema"], "y")
    assert res.p_value("lr:ema") < 1e-6
    cells = res.interactions[("lr", "ema")]
    hot = cells[(cells.a_level == 4.5e-4) & (cells.b_level == 0.9999)]["mean"].iloc[0]
    cold = cells[(cells.a_level == 4.5e-4) & (cells.b_level == 0.999)]["mean"].iloc[0]
    assert hot - cold == pytest.approx(0.2 - 0.10, abs=0.02)


def test_unbalanced_design_uses_ls_means():
    # lr=4.5e-4 only ever ran with the good ema level: its raw mean flatters it, the LS mean not
    rows = [{"lr": lr, "ema": ema, "y": 0.5 + LR_EFFECT[lr] + EMA_EFFECT[ema]}
            for lr, ema in itertools.product(LR[:2], EMA)]
    rows += [{"lr": 4.5e-4, "ema": 0.9999, "y": 0.5 + 0.10 - 0.05}] * 2
    res = estimate_effects(pd.DataFrame(rows), ["lr", "ema"], "y")
    assert res.effect("lr", 4.5e-4) - res.effect("lr", 2e-4) == pytest.approx(0.20, abs=1e-6)
    raw = res.main.set_index(["knob", "level"])["mean"]
    assert raw[("lr", 4.5e-4)] == pytest.approx(0.55)


def test_latin_square_interaction_is_aliased():
    # 3-level Latin square: the a x b interaction is aliased with the main effect of c
    rows = []
    for i, j in itertools.product(range(3), range(3)):
        k = (i + j) % 3
        rows.append({"window_size": [8, 12, 16][i], "model_dim": [320, 384, 448][j],
                     "lr": LR[k], "y": 0.1 * i + 0.05 * j + 0.02 * k})
    res = estimate_effects(pd.DataFrame(rows), ["window_size", "model_dim", "lr"], "y")
    assert ("window_size", "model_dim") not in res.interactions
    note = next(n for n in res.notes if n.startswith("Interaction window_size x model_dim"))
    assert "not estimable" in note and "aliased" in note and "lr" in note
    assert math.isnan(res.p_value("window_size:model_dim"))


def test_one_at_a_time_block_is_not_estimable():
    # guidance and projection weight each varied around the baseline, never crossed
    rows = [{"guidance": 1.0, "projection_weight": 1.0, "y": 0.5}]
    rows += [{"guidance": g, "projection_weight": 1.0, "y": 0.5 + g / 10} for g in (0.5, 1.5)]
    rows += [{"guidance": 1.0, "projection_weight": w, "y": 0.5 + w / 20} for w in (0.5, 2.0)]
    res = estimate_effects(pd.DataFrame(rows), ["guidance", "projection_weight"], "y")
    assert res.interactions == {}
    note = next(n for n in res.notes if "guidance x projection_weight" in n)
    assert "aliased" in note and "does not cross" in note
    assert any("no residual degrees of freedom" in n for n in res.notes)
    assert res.anova["p_value"].isna().all()  # nothing to test against


def test_too_few_runs():
    df = pd.DataFrame({"max_horizon": [16, 32, 48], "cadence": [8, 16, 8], "y": [0.1, 0.2, 0.3]})
    res = estimate_effects(df, ["max_horizon", "cadence"], "y")
    assert any("max_horizon x cadence" in n and "too few runs" in n for n in res.notes)


def test_aliased_main_effects_and_dropped_runs():
    df = pd.DataFrame({"inverse_encode": [0.25, 0.5, 0.75, 0.25, 0.5, 0.75],
                       "inverse_decode": [0.25, 0.5, 0.75, 0.25, 0.5, 0.75],
                       "y": [0.3, 0.4, 0.5, 0.31, 0.41, math.inf]})
    res = estimate_effects(df, ["inverse_encode", "inverse_decode"], "y")
    assert res.factors == ["inverse_encode"] and res.n_runs == 5
    assert any("inverse_decode" in n and "aliased" in n and "inverse_encode" in n
               for n in res.notes)
    assert any("1 run(s) left out" in n for n in res.notes)


def test_full_grid_saturated_interaction_has_no_residual_df():
    res = estimate_effects(_grid(reps=1, interaction=0.2), ["lr", "ema"], "y")
    assert ("lr", "ema") not in res.interactions
    assert any("lr x ema" in n and "no residual degrees of freedom" in n for n in res.notes)


def test_playbook_pairs_cover_the_issue_list():
    pairs = playbook_pairs()
    for p in [("lr", "ema"), ("window_size", "model_dim"), ("latent_tokens", "inverse_encode"),
              ("guidance", "projection_weight"), ("max_horizon", "cadence")]:
        assert p in pairs
