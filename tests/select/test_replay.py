"""Replaying stopping policies on an exhaustive round (physweep.select.replay): compute is
counted per training, regret and Kendall tau against the exhaustive ranking, Optuna's pruners
fed the same curves."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from physweep.select.replay import (
    ExhaustiveRound,
    RunCurve,
    load_exhaustive_round,
    no_stopping,
    optuna_policy,
    replay_round,
    score_outcome,
    sigma_band_rule,
    sigma_rule,
    sigma_rule_replicates_stop,
)

STEPS = 100


def _eval(path, nrmse):
    per = np.full((4, 3), nrmse)
    xr.Dataset({"nrmse": (("traj", "lead"), per)},
               attrs={"nrmse": nrmse, "diverged": 0, "gates_pass": 1}).to_netcdf(path)
    return path


def _loss(level):
    """A loss curve that decays towards ``level``."""
    steps = np.arange(1, STEPS + 1)
    return steps, level + 0.5 * np.exp(-steps / 20.0)


def _round(tmp_path, table):
    """table: (name, training, baseline, seed, probe, final, loss level)."""
    runs = []
    for name, training, baseline, seed, probe, final, level in table:
        steps, loss = _loss(level)
        runs.append(RunCurve(name, training, baseline, baseline and seed > 0, probe, final, True,
                             _eval(tmp_path / f"{name}.nc", probe), steps, loss,
                             np.full(STEPS, 0.6)))
    return ExhaustiveRound("r", "nrmse", 0.35, STEPS, runs)


TABLE = [  # baselines: probe 0.50/0.52/0.54 -> mean 0.52, sigma 0.02
    ("baseline", "t0", True, 0, 0.50, 0.45, 0.30),
    ("baseline_seed~1", "t1", True, 1, 0.52, 0.46, 0.31),
    ("baseline_seed~2", "t2", True, 2, 0.54, 0.47, 0.32),
    ("strong", "t3", False, 0, 0.45, 0.40, 0.20),       # 3.5 sigma better at the probe
    ("weak", "t4", False, 0, 0.515, 0.49, 0.40),        # stopped; rightly (worse at the end)
    ("late", "t5", False, 0, 0.53, 0.35, 0.35),         # stopped; best at the end (a loss)
    ("strong_twin", "t3", False, 0, 0.515, 0.41, 0.20),  # eval-only twin of strong: shares t3
]


def test_no_stopping_costs_everything_and_loses_nothing(tmp_path):
    rnd = _round(tmp_path, TABLE)
    out = score_outcome(rnd, no_stopping(rnd))
    assert out.compute == 1.0 and out.regret == 0.0 and out.tau == pytest.approx(1.0)
    assert out.winner == "late" and out.top_k_same


def test_sigma_rule_counts_compute_per_training_and_measures_its_regret(tmp_path):
    rnd = _round(tmp_path, TABLE)
    out = score_outcome(rnd, sigma_rule(rnd))
    assert sorted(out.stopped) == ["late", "strong_twin", "weak"]
    # 6 trainings: 3 baselines and strong (shared with its stopped twin) to the end, 2 at 0.35
    assert out.compute == pytest.approx((4 + 2 * 0.35) / 6)
    assert out.winner == "strong"
    assert out.regret == pytest.approx(0.40 - 0.35)
    assert out.tau < 1.0 and not out.top_k_same
    # a stricter factor keeps nothing but the baselines
    strict = score_outcome(rnd, sigma_rule(rnd, sigma_factor=5.0))
    assert strict.winner == "baseline" and strict.compute == pytest.approx((3 + 3 * 0.35) / 6)


def test_proposed_rules_stop_the_replicates_and_runs_outside_the_top_k_band(tmp_path):
    rnd = _round(tmp_path, TABLE)
    rep = score_outcome(rnd, sigma_rule_replicates_stop(rnd))
    assert sorted(rep.stopped) == ["baseline_seed~1", "baseline_seed~2", "late", "strong_twin",
                                   "weak"]
    assert rep.compute == pytest.approx((2 + 4 * 0.35) / 6)
    # top-2 band: the 2nd best probe (non-replicate) is the baseline's 0.50; a run continues
    # only if 1 sigma better than the baseline mean and within 1 sigma of 0.50
    band = score_outcome(rnd, sigma_band_rule(rnd, k=2))
    assert band.stop_fraction["strong"] == 1.0 and band.stop_fraction["baseline"] == 1.0
    assert band.compute == pytest.approx((2 + 4 * 0.35) / 6)
    # with two strong runs the band (2nd best 0.45 + sigma) stops a run the rule as it is keeps
    extra = TABLE + [("strong2", "t6", False, 0, 0.44, 0.42, 0.2),
                     ("middling", "t7", False, 0, 0.49, 0.43, 0.3)]  # 1.5 sigma better
    rnd = _round(tmp_path, extra)
    assert score_outcome(rnd, sigma_rule(rnd)).stop_fraction["middling"] == 1.0
    band = score_outcome(rnd, sigma_band_rule(rnd, k=2))
    assert band.stop_fraction["middling"] == 0.35 and band.stop_fraction["strong2"] == 1.0
    # a wider band (k = 4: 0.50 + sigma) keeps it again
    assert sigma_band_rule(rnd, k=4).stop_fraction["middling"] == 1.0


def test_optuna_median_pruner_on_loss_curves_prunes_the_worse_curves(tmp_path):
    import optuna.pruners as P

    rnd = _round(tmp_path, TABLE)
    out = score_outcome(rnd, optuna_policy(rnd, "median", lambda r: P.MedianPruner(
        n_startup_trials=3), "loss", report_every=10))
    # after 3 baselines, strong (lower loss) runs on; weak's loss is above the median: pruned
    # at the first report; late (0.35, above the baselines' 0.31 median) too
    assert out.stop_fraction["strong"] == 1.0
    assert out.stop_fraction["weak"] == pytest.approx(0.10)
    assert out.stop_fraction["late"] == pytest.approx(0.10)
    assert out.winner == "strong" and out.regret == pytest.approx(0.05)
    # the same pruner fed the probe score at the probe step stops at the probe step
    probe = optuna_policy(rnd, "median", lambda r: P.MedianPruner(n_startup_trials=3), "probe")
    assert {probe.stop_fraction[n] for n in ("weak", "late")} == {0.35}
    assert probe.stop_fraction["strong"] == 1.0


def test_replay_table_has_every_policy_and_shuffled_means(tmp_path):
    rnd = _round(tmp_path, TABLE)
    rows = replay_round(rnd, shuffles=4)
    labels = [(r["policy"], r["feed"]) for r in rows]
    assert ("sigma rule", "probe small eval") in labels and ("no stopping", "-") in labels
    assert any(p.startswith("SuccessiveHalvingPruner") and f.startswith("training loss")
               for p, f in labels)
    for r in rows:
        assert 0.0 < r["compute"] <= 1.0 and r["regret"] >= 0.0
        assert 0.0 <= r["shuffled_zero_regret"] <= 1.0
    sigma = next(r for r in rows if r["policy"] == "sigma rule")
    assert sigma["shuffled_compute"] == pytest.approx(sigma["compute"])  # order-free


def test_a_round_run_with_early_stopping_on_is_refused_by_name(tmp_path):
    run = tmp_path / "r" / "runs" / "weak"
    run.mkdir(parents=True)
    (tmp_path / "r" / "plan.json").write_text(json.dumps(
        {"round": "r", "objective": "nrmse",
         "runs": [{"run": "weak", "training": "t", "baseline": False, "seed": 0}]}))
    for f in ("small_eval.nc", "probe_eval.nc"):
        (run / f).write_text("")
    (run / "decision.json").write_text(json.dumps({"decision": "stop", "probe_fraction": 0.35}))
    with pytest.raises(ValueError, match=r"runs/weak/decision.json: decision 'stop'.*"
                                         r"early_stop.enabled: false"):
        load_exhaustive_round(tmp_path / "r")
    with pytest.raises(ValueError, match="plan.json: missing"):
        load_exhaustive_round(tmp_path / "nothing")
