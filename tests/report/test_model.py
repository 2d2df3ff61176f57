"""The round-results model: read once, typed, names from physics.gates, hardware as recorded."""

import json
import platform

import pandas as pd
import xarray as xr

from physweep.physics.gates import GATE_NAMES
from physweep.report.model import (
    gate_column,
    gate_pass_column,
    load_ranking,
    load_round,
    ranking_summary,
)


def _ranking(path, **extra):
    rows = [{"run": "a", "status": "ok", "rank": 1, "winner": True, "promoted": True,
             "gates_pass": True, "score": 0.2, "compute_fraction": 1.0, "train_steps": 100,
             **{gate_column(g): 0.01 for g in GATE_NAMES},
             **{gate_pass_column(g): True for g in GATE_NAMES}},
            {"run": "b", "status": "early_stopped", "rank": pd.NA, "winner": False,
             "promoted": False, "gates_pass": False, "score": 0.3, "compute_fraction": 0.4,
             "train_steps": 40, **{gate_column(g): 0.5 for g in GATE_NAMES},
             **{gate_pass_column(g): g != "divergence" for g in GATE_NAMES}}]
    for row in rows:
        row.update(extra)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _log(path, **attrs):
    xr.Dataset({"loss": ("step", [1.0, 0.5]), "step_time_s": ("step", [1.0, 1.0])},
               coords={"step": [0, 1]}, attrs={"status": "ok", "steps_total": 100, **attrs}
               ).to_netcdf(path)
    return path


def test_gates_typed_by_their_one_spelling(tmp_path):
    res = load_round("r", _ranking(tmp_path / "ranking.csv"), {}, {}, {}, None, None)
    assert res.gates == list(GATE_NAMES)
    a, b = res.runs["a"], res.runs["b"]
    assert a.winner and a.promoted and a.gates_pass is True and a.rank == 1
    assert b.gates["divergence"].passed is False and b.gates["mass_flux"].passed is True
    assert b.gates["divergence"].value == 0.5 and b.early_stopped
    assert res.winners == ["a"] and res.promoted == ["a"]
    assert [p.split(":")[0] for p in res.problems] == ["winners", "plan"]  # not given: said so


def test_bools_are_what_rank_writes(tmp_path):
    """True/False (and empty) only: "yes", "pass", "ok" are not physweep's spelling."""
    csv = tmp_path / "ranking.csv"
    csv.write_text("run,winner,promoted,gates_pass\na,True,False,\nb,yes,pass,ok\n")
    df = load_ranking(csv)
    assert list(df["winner"]) == [True, None] and list(df["promoted"]) == [False, None]
    assert list(df["gates_pass"]) == [None, None]


def test_hardware_as_the_training_job_recorded_it(tmp_path):
    csv = _ranking(tmp_path / "ranking.csv")
    segs = [{"hardware": "1x NVIDIA H100 80GB HBM3", "device": "cuda", "threads": 8},
            {"hardware": "1x NVIDIA A100-SXM4-40GB", "device": "cuda", "threads": 8}]
    logs = {"a": _log(tmp_path / "a.nc", hardware="1x NVIDIA A100-SXM4-40GB", device="cuda",
                      threads=8, hostname="gpu-node", hardware_segments=json.dumps(segs)),
            "b": _log(tmp_path / "b.nc", hardware="AMD EPYC (16 cores)", device="cpu",
                      threads=16, hostname="cpu-node")}
    res = load_round("r", csv, {}, logs, {}, None, None)
    hw, source = res.hardware()
    assert hw == ["1x NVIDIA A100-SXM4-40GB", "1x NVIDIA H100 80GB HBM3", "AMD EPYC (16 cores)"]
    assert source == "train logs" and res.hours_unit() == "GPU-hours"
    assert res.devices() == {"cuda, 8 thread(s)": 1, "cpu, 16 thread(s)": 1}
    assert res.runs["a"].log.hardware.threads == 8 and res.runs["a"].log.step_time == 1.0


def test_hardware_never_detected_on_the_report_host(tmp_path):
    """Logs written before the hardware attrs, on this very host: not recorded, said so."""
    csv = _ranking(tmp_path / "ranking.csv")
    logs = {"a": _log(tmp_path / "a.nc", hostname=platform.node())}
    res = load_round("r", csv, {}, logs, {}, None, None)
    assert res.hardware() == ([f"not recorded; trained on host(s) {platform.node()}"],
                              "train logs")
    assert res.hours_unit() == "device-hours"
    # a CPU-only torch build recorded in the log's packages: CPU-hours
    logs = {"a": _log(tmp_path / "b.nc", hostname="h", packages=json.dumps({"torch": "2.13.0+cpu"}))}
    assert load_round("r", csv, {}, logs, {}, None, None).hours_unit() == "CPU-hours"


def test_ranking_summary_for_the_index(tmp_path):
    s = ranking_summary(_ranking(tmp_path / "ranking.csv"), [])
    assert s.winner["run"] == "a" and s.n_runs == 2 and s.n_stopped == 1
    assert s.used == 1.4 and abs(s.saved - 0.6) < 1e-12 and s.steps_used == 140
    assert abs(s.steps_saved - 60) < 1e-9


def test_every_ranked_metric_has_a_label():
    from physweep.report.round import HIDDEN_METRICS, METRIC_LABELS, METRICS
    from physweep.select.rank import RANK_METRICS

    assert set(METRICS) | set(HIDDEN_METRICS) == set(RANK_METRICS)
    assert set(METRICS) <= set(METRIC_LABELS)
