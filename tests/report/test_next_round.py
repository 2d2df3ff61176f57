"""`physweep next`: a finished round with known effects -> a narrower round file that plans."""

from __future__ import annotations

import copy
import itertools
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from physweep.io import read_yaml_file, write_json, write_yaml
from physweep.plan.config import load_workflow_config
from physweep.plan.round import plan_round
from physweep.report.next_round import narrow_levels, propose_next

LR = [2e-4, 3e-4, 4.5e-4]
WARMUP = [0.03, 0.05, 0.06]


def finished_round(results: Path, wcfg, name: str, runs: list[dict], response,
                   winner: str = "baseline") -> None:
    """ranking.csv, per-run decision.json (the probe-point score the effects use) and
    winners.yaml of a finished round; ``runs``: name + swept knob values."""
    rdir = results / name
    defaults = dict(wcfg.config["knobs"])
    rows = []
    for i, r in enumerate(runs):
        knobs = {**defaults, **{k: v for k, v in r.items() if k != "run"}}
        y = response(knobs) + 1e-4 * ((i * 7) % 5 - 2)  # small, fixed "noise"
        write_json(rdir / "runs" / r["run"] / "decision.json",
                   {"run": r["run"], "run_score": y, "decision": "continue", "continue": True})
        rows.append({"run": r["run"], "status": "ok", "objective": "nrmse", "score": y,
                     **{f"knob.{k}": knobs[k] for k in r if k != "run"}})
        if r["run"] == winner:
            best = knobs
    cols = sorted({c for row in rows for c in row if c.startswith("knob.")})
    df = pd.DataFrame(rows)
    for c in cols:  # every run carries every swept knob's value
        df[c] = [r.get(c, defaults[c[5:]]) for r in rows]
    df.to_csv(rdir / "ranking.csv", index=False)
    write_yaml(rdir / "winners.yaml", {"round": name, "objective": "nrmse", "winners": [winner],
                                       "reason": "test", "best": {"run": winner, "knobs": best},
                                       "fixed_for_next": best})


def round_a_runs() -> list[dict]:
    """round_a's runs: baselines, the lr x warmup grid, the cadence block at lr 3e-4/0.05."""
    runs = [{"run": "baseline"}, {"run": "baseline_seed~1"}, {"run": "baseline_seed~2"}]
    runs += [{"run": f"lr~{lr:g}_warmup~{w:g}", "lr": lr, "warmup": w}
             for lr, w in itertools.product(LR, WARMUP) if (lr, w) != (3e-4, 0.05)]
    runs += [{"run": f"cadence~{c}", "cadence": c, "lr": 3e-4, "warmup": 0.05} for c in (8, 32)]
    return runs


def lr_decreasing(k):  # lr has a strong effect (higher is better), warmup and cadence none
    return 0.6 - 0.02 * LR.index(k["lr"])


def plans(wcfg, path: Path, results: Path):
    """Plan the written file the way the workflow would: in a rounds directory beside the
    repository's rounds, with the source round's winners."""
    from physweep.plan.spec import winner_knobs

    rounds = path.parent / "rounds"
    rounds.mkdir(exist_ok=True)
    for f in wcfg.round_files.values():
        shutil.copy(f, rounds / f.name)
    shutil.copy(path, rounds / path.name)
    config = copy.deepcopy(wcfg.config)
    config["rounds_dir"] = str(rounds)
    new = load_workflow_config(config, wcfg.root)
    src = read_yaml_file(path)["inherit"][0]["round"]
    return plan_round(new, path.stem, {f"round:{src}": winner_knobs(results / src /
                                                                    "winners.yaml")})


def test_next_narrows_lr_and_drops_the_knobs_without_effect(wcfg, tmp_path, capsys,
                                                             monkeypatch):
    from physweep.cli import main

    results = tmp_path / "results"
    finished_round(results, wcfg, "round_a", round_a_runs(), lr_decreasing)
    out = tmp_path / "round_a_next.yaml"
    assert main(["next", "round_a", "--results", str(results), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "lr: p = " in text and "-> significant" in text
    assert "warmup: p = " in text and "dropped, kept at the winner's 0.05" in text
    assert "cadence: p = " in text and "dropped, kept at the winner's 16" in text
    data = read_yaml_file(out)
    assert data["name"] == "round_a_next" and data["objective"] == "nrmse"
    # best lr 4.5e-4 sits at the top of the swept range: half a (geometric) step beyond it
    assert data["blocks"][0]["knobs"] == {"lr": [3.7e-4, 4.5e-4, 5.5e-4]}
    assert data["inherit"] == [{"round": "round_a", "knobs": ["cadence", "ema", "warmup"]}]
    assert "#   lr: p = " in out.read_text()  # the reasoning stays in the file
    plan = plans(wcfg, out, results)
    assert len(plan.runs) == 3 + 3 and plan.varied == ["lr"]
    assert {r.values["warmup"] for r in plan.runs} == {0.05}
    # never overwritten without --force
    assert main(["next", "round_a", "--results", str(results), "--out", str(out)]) == 1
    assert "--force" in capsys.readouterr().err
    assert main(["next", "round_a", "--results", str(results), "--out", str(out), "--force"]) == 0


def test_an_interior_best_level_gets_midpoints_on_both_sides(wcfg, tmp_path):
    results = tmp_path / "results"
    finished_round(results, wcfg, "round_a", round_a_runs(),
                   lambda k: 0.6 + 0.02 * abs(LR.index(k["lr"]) - 1))
    prop = propose_next(wcfg, results, "round_a")
    assert prop.name == "round_a_next" and prop.swept == {"lr": [2.4e-4, 3e-4, 3.7e-4]}


def test_refuses_an_unfinished_round(wcfg, tmp_path, capsys):
    from physweep.cli import main

    results = tmp_path / "results"
    finished_round(results, wcfg, "round_a", round_a_runs(), lr_decreasing)
    (results / "round_a" / "ranking.csv").unlink()
    out = tmp_path / "x.yaml"
    assert main(["next", "round_a", "--results", str(results), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "round round_a has not finished: ranking.csv missing" in err
    assert not out.exists()


def test_nothing_significant_writes_nothing(wcfg, tmp_path, capsys):
    from physweep.cli import main

    results = tmp_path / "results"
    finished_round(results, wcfg, "round_a", round_a_runs(), lambda k: 0.6)
    out = tmp_path / "x.yaml"
    assert main(["next", "round_a", "--results", str(results), "--out", str(out)]) == 1
    assert "nothing to narrow" in capsys.readouterr().err and not out.exists()


def test_more_than_three_knobs_get_a_fractional_design(wcfg, tmp_path):
    """round_b's corrector grid, inverse-loss list and projection weights, every knob with an
    effect: four knobs are swept again, in a balanced fraction."""
    runs = [{"run": "baseline"}, {"run": "baseline_seed~1"}, {"run": "baseline_seed~2"}]
    runs += [{"run": f"guidance~{g}_steps~{s}", "guidance": g, "steps": s}
             for g, s in itertools.product([0.5, 1.0, 1.5], [1, 2]) if (g, s) != (1.0, 2)]
    runs += [{"run": f"ie~{v}", "inverse_encode": v, "inverse_decode": v} for v in (0.25, 0.75)]
    runs += [{"run": f"pw~{v}", "projection_weight": v} for v in (0.5, 2.0)]

    def response(k):
        return (0.3 - 0.02 * k["guidance"] - 0.02 * k["steps"] + 0.04 * k["inverse_encode"]
                + 0.01 * k["projection_weight"])

    results = tmp_path / "results"
    finished_round(results, wcfg, "round_b", runs, response)
    prop = propose_next(wcfg, results, "round_b")
    assert set(prop.swept) == {"guidance", "steps", "inverse_encode", "projection_weight"}
    assert prop.swept["inverse_encode"] == [0.125, 0.25, 0.375]
    assert prop.swept["steps"] == [2, 3]  # integer, best at the edge: one beyond
    # geometrically spaced levels (x2): geometric midpoint up, half a step below the edge
    assert prop.swept["projection_weight"] == [0.35, 0.5, 0.71]
    block = prop.round["blocks"][0]
    assert block["design"]["type"] == "fractional"
    n = len(prop.plan.runs) - 3
    assert n == block["design"]["runs"] < 3 * 2 * 3 * 3
    assert any("guidance lambda x projection weight" in r for r in prop.reasoning)
    assert "inverse_decode" in prop.inherited  # aliased with inverse_encode: kept at the winner


@pytest.mark.parametrize(("knob", "levels", "best", "expected"), [
    ("warmup", [0.03, 0.05, 0.06], 0.05, [0.04, 0.05, 0.055]),
    ("lr", [2e-4, 3e-4, 4.5e-4], 2e-4, [1.6e-4, 2e-4, 2.4e-4]),
    ("steps", [1, 2], 2, [2, 3]),
    ("u_shape", [False, True], True, None),
    ("cadence", [8, 16, 32], 16, None),  # the demo preset maps 8, 16, 32 only
])
def test_narrow_levels(wcfg, knob, levels, best, expected):
    new, why = narrow_levels(knob, levels, best, wcfg.preset)
    assert new == expected, why
    if expected is None:
        assert why


def test_sizes_snap_to_what_a_scale_preset_keeps(wcfg):
    preset = {"sizes": {"latent_tokens": {"scale": 1.0, "multiple": 8}}}
    new, _ = narrow_levels("latent_tokens", [384, 512, 768], 384, preset)
    assert new == [328, 384, 448] and all(v % 8 == 0 for v in new)


def test_decisions_json_is_what_the_effects_read(wcfg, tmp_path):
    results = tmp_path / "results"
    finished_round(results, wcfg, "round_a", round_a_runs(), lr_decreasing)
    d = json.loads((results / "round_a" / "runs" / "baseline" / "decision.json").read_text())
    assert d["run_score"] == pytest.approx(0.58, abs=1e-3)
