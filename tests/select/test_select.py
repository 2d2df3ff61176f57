"""Early stop, promotion and ranking follow the playbook's rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from physweep.select.early_stop import baseline_reference, decide
from physweep.select.rank import block_winner, promote, rank
from physweep.select.scores import objective_score, read_eval


def write_eval(path, nrmse, gates_pass=True, diverged=False, ece=0.1, j=math.nan, s=0.01,
               n_traj=4, spread=0.0, seed=0):
    rng = np.random.default_rng(seed)
    per = nrmse + spread * rng.standard_normal((n_traj, 3))
    ds = xr.Dataset(
        {"nrmse": (("traj", "lead"), per),
         "ece": ("traj", np.full(n_traj, ece)),
         "gate_divergence": ("traj", np.full(n_traj, 0.1)),
         "gate_divergence_pass": ("traj", np.full(n_traj, gates_pass))},
        attrs={"nrmse": float(per.mean()), "nrmse_long": float(per[:, 1:].mean()),
               "nrmse_ood": math.nan, "ece": ece, "crps": 0.1, "spread_skill": 1.0,
               "s_per_step": s, "j_per_step": j, "diverged": int(diverged),
               "gates_pass": int(gates_pass), "long_horizon_from": 2})
    ds.to_netcdf(path)
    return path


def test_sigma_from_seed_replicates(tmp_path):
    evals = [write_eval(tmp_path / f"b{i}.nc", v) for i, v in enumerate([0.50, 0.52, 0.54])]
    ref = baseline_reference(evals, "nrmse")
    mean, sigma, method = ref["mean"], ref["sigma"], ref["sigma_method"]
    assert method == "seeds"
    assert mean == pytest.approx(0.52) and sigma == pytest.approx(0.02)


def test_sigma_by_bootstrap_with_one_seed(tmp_path):
    ev = write_eval(tmp_path / "b.nc", 0.5, spread=0.05, n_traj=16)
    ref = baseline_reference([ev], "nrmse", bootstrap_samples=2000)
    sigma, method = ref["sigma"], ref["sigma_method"]
    per_traj = xr.open_dataset(ev)["nrmse"].values.mean(axis=1)
    assert method == "bootstrap"
    # bootstrap sigma of the mean ~ std / sqrt(n)
    assert sigma == pytest.approx(per_traj.std(ddof=1) / 4, rel=0.15)


@pytest.mark.parametrize(("score", "expected"), [(0.45, "continue"), (0.51, "stop"), (0.60, "stop")])
def test_decision_is_one_sigma_better_than_baseline(tmp_path, score, expected):
    base = baseline_reference(
        [write_eval(tmp_path / f"b{i}.nc", v) for i, v in enumerate([0.50, 0.52, 0.54])], "nrmse")
    run = write_eval(tmp_path / "r.nc", score)
    out = decide("r", False, run, base, "nrmse", sigma_factor=1.0, probe_fraction=0.35)
    assert out["decision"] == expected
    assert out["saved_fraction"] == (0.65 if expected == "stop" else 0.0)


def test_sigma_factor_moves_the_threshold(tmp_path):
    base = baseline_reference(
        [write_eval(tmp_path / f"b{i}.nc", v) for i, v in enumerate([0.50, 0.52, 0.54])], "nrmse")
    run = write_eval(tmp_path / "r.nc", 0.49)  # 1.5 sigma better
    assert decide("r", False, run, base, "nrmse", 1.0, 0.35)["decision"] == "continue"
    assert decide("r", False, run, base, "nrmse", 2.0, 0.35)["decision"] == "stop"


def test_exhaustive_round_continues_every_run_and_keeps_the_rules_decision(tmp_path):
    base = baseline_reference(
        [write_eval(tmp_path / f"b{i}.nc", v) for i, v in enumerate([0.50, 0.52, 0.54])], "nrmse")
    weak, strong = write_eval(tmp_path / "w.nc", 0.515), write_eval(tmp_path / "s.nc", 0.45)
    off = decide("w", False, weak, base, "nrmse", 1.0, 0.35, enabled=False)
    assert (off["decision"], off["rule_decision"], off["continue"]) == ("continue", "stop", True)
    assert off["saved_fraction"] == 0.0 and "early stopping off" in off["reason"]
    on = decide("w", False, weak, base, "nrmse", 1.0, 0.35)
    assert (on["decision"], on["rule_decision"]) == ("stop", "stop")
    kept = decide("s", False, strong, base, "nrmse", 1.0, 0.35, enabled=False)
    assert (kept["decision"], kept["rule_decision"]) == ("continue", "continue")
    bad = write_eval(tmp_path / "d.nc", math.nan, diverged=True)
    assert decide("d", False, bad, base, "nrmse", 1.0, 0.35, enabled=False)["decision"] == "diverged"


def test_baseline_continues_and_diverged_stops(tmp_path):
    evals = [write_eval(tmp_path / f"b{i}.nc", v) for i, v in enumerate([0.50, 0.52])]
    base = baseline_reference(evals, "nrmse")
    assert base["sigma_method"] == "seeds" and len(base["scores"]) == 2
    assert decide("b0", True, evals[0], base, "nrmse", 1.0, 0.35)["decision"] == "baseline"
    bad = write_eval(tmp_path / "d.nc", math.nan, diverged=True)
    assert decide("d", False, bad, base, "nrmse", 1.0, 0.35)["decision"] == "diverged"
    with pytest.raises(ValueError, match="objective 'nrmse', not 'ece'"):
        decide("d", False, bad, base, "ece", 1.0, 0.35)


def test_objectives(tmp_path):
    s = read_eval(write_eval(tmp_path / "a.nc", 0.4, ece=0.07, s=0.5))
    assert objective_score(s, "nrmse") == pytest.approx(0.4)
    assert objective_score(s, "ece") == pytest.approx(0.07)
    assert objective_score(s, "nrmse_per_joule") == pytest.approx(0.2)  # energy missing: s/step
    s2 = read_eval(write_eval(tmp_path / "b.nc", 0.4, j=3.0))
    assert objective_score(s2, "nrmse_per_joule") == pytest.approx(1.2)


def _runs(tmp_path, table):
    runs = {}
    for name, (score, gates, decision) in table.items():
        runs[name] = {"eval": write_eval(tmp_path / f"{name}.nc", score, gates_pass=gates),
                      "decision": {"decision": decision, "continue": decision in ("continue", "baseline")},
                      "knobs": {"lr": score}, "replicate": name.endswith("~1"), "block": "b",
                      "seed": 1 if name.endswith("~1") else 0, "is_baseline": name.startswith("base")}
    return runs


def test_promotion_skips_gate_failures_stopped_runs_and_replicates(tmp_path):
    runs = _runs(tmp_path, {"baseline": (0.5, True, "baseline"), "baseline_seed~1": (0.1, True, "baseline"),
                            "good": (0.3, True, "continue"), "cheat": (0.05, False, "continue"),
                            "stopped": (0.2, True, "stop")})
    out = promote(runs, "nrmse", k=2)
    assert out["promoted"] == ["good", "baseline"]


def test_block_winner_and_rank(tmp_path):
    runs = _runs(tmp_path, {"baseline": (0.5, True, "baseline"), "good": (0.3, True, "continue"),
                            "cheat": (0.05, False, "continue")})
    assert block_winner(runs, "nrmse")["best"]["run"] == "good"
    full = {"good": write_eval(tmp_path / "good_full.nc", 0.35)}
    df, winners = rank(runs, full, "nrmse", "r", ["lr"])
    assert winners["winners"] == ["good"] and winners["fixed_for_next"] == {"lr": 0.3}
    cheat = df[df["run"] == "cheat"].iloc[0]
    assert bool(cheat["gates_pass"]) is False and cheat["rank"] is pd_na()
    assert list(df["run"][:2]) == ["good", "baseline"]


def test_ranking_compares_small_evals_and_the_full_eval_picks_among_the_promoted(tmp_path):
    # promoted "a" and "b" were the small-eval top 2; their full evals (a harder suite) score
    # worse than "c"'s small eval: c must not be ranked below them for that, and the winner is
    # decided by the full eval among the promoted (b beats a there)
    runs = _runs(tmp_path, {"a": (0.30, True, "continue"), "b": (0.32, True, "continue"),
                            "c": (0.34, True, "continue")})
    full = {"a": write_eval(tmp_path / "a_full.nc", 0.45),
            "b": write_eval(tmp_path / "b_full.nc", 0.41)}
    df, winners = rank(runs, full, "nrmse", "r", ["lr"])
    rows = df.set_index("run")
    assert list(df["run"]) == ["a", "b", "c"]  # by small-eval score, promoted or not
    assert list(rows["score"]) == pytest.approx([0.30, 0.32, 0.34])
    assert rows.at["b", "full_rank"] == 1 and rows.at["a", "full_rank"] == 2
    assert rows.at["b", "full_score"] == pytest.approx(0.41)
    assert rows.at["c", "full_rank"] is pd_na() and math.isnan(rows.at["c", "full_score"])
    assert winners["winners"] == ["b"] and "full-eval" in winners["reason"]


def pd_na():
    import pandas as pd

    return pd.NA


def test_early_stopped_runs_are_ranked_but_cannot_win(tmp_path):
    runs = _runs(tmp_path, {"baseline": (0.5, True, "baseline"), "baseline_seed~1": (0.45, True, "baseline"),
                            "stopped": (0.2, True, "stop"), "failing": (0.1, False, "continue")})
    full = {"baseline": write_eval(tmp_path / "b_full.nc", 0.6, gates_pass=False)}
    df, winners = rank(runs, full, "nrmse", "r", ["lr"])
    # the promoted baseline failed a gate in the full eval; the best complete gate-passing run is
    # a baseline replicate: the baseline configuration is carried forward
    assert winners["winners"] == ["baseline_seed~1"]
    stopped = df[df["run"] == "stopped"].iloc[0]
    assert stopped["status"] == "early_stopped" and not stopped["winner"]
    ranks = dict(zip(df["run"], df["rank"], strict=True))
    assert ranks["baseline_seed~1"] < ranks["stopped"]
