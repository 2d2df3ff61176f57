"""A round with early stopping off trains every run to the end and records what the sigma rule
would have decided; benchmarks/sweep_efficiency.py replays the policies on it and its sigma rule
stops exactly the runs the workflow recorded."""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml
from snakerun import ROOT, snakemake, write_tiny_config

pytestmark = pytest.mark.slow


def _benchmark():
    spec = importlib.util.spec_from_file_location(
        "sweep_efficiency", ROOT / "benchmarks" / "sweep_efficiency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exhaustive_round_trains_everything_and_replays(tmp_path, capsys):
    config = write_tiny_config(tmp_path)
    cfg = yaml.safe_load(config.read_text())
    cfg["early_stop"]["enabled"] = False
    # a strict rule, so that the tiny round has runs the rule would stop
    cfg["early_stop"]["sigma_factor"] = 3.0
    config.write_text(yaml.safe_dump(cfg))
    snakemake("round_t", "--cores", "2", "--configfile", str(config), cwd=tmp_path, timeout=1200)
    res = tmp_path / "results" / "round_t"
    decisions = {p.parent.name: json.loads(p.read_text())
                 for p in (res / "runs").glob("*/decision.json")}
    assert len(decisions) == 6
    for run, d in decisions.items():
        assert d["early_stop_enabled"] is False and d["decision"] != "stop", run
        assert (res / "runs" / run / "small_eval.nc").exists(), run
    for training in (res / "trainings").iterdir():
        assert (training / "final" / "checkpoint.pt").exists(), training.name
    would_stop = {r for r, d in decisions.items() if d["rule_decision"] == "stop"}
    assert would_stop, "the strict rule stops nothing: the replay check below would be empty"

    bench = _benchmark()
    rc = bench.main(["--results", str(tmp_path / "results"), "--rounds", "round_t",
                     "--shuffles", "3", "--json", str(tmp_path / "bench.json")])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "the replayed sigma rule stops exactly the runs the workflow recorded" in printed
    rows = json.loads((tmp_path / "bench.json").read_text())["round_t"]["rows"]
    sigma = next(r for r in rows if r["policy"] == "sigma rule")
    assert set(sigma["stopped_runs"]) == would_stop
    assert {r["policy"] for r in rows} >= {"no stopping", "MedianPruner",
                                          "SuccessiveHalvingPruner(eta=4)"}
    assert next(r for r in rows if r["policy"] == "no stopping")["compute"] == 1.0
