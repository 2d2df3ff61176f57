"""A tiny round really runs end to end, and forcing one run re-executes that run and what
depends on it, and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import xarray as xr
import yaml
from snakerun import snakemake, write_tiny_config

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def tiny_round(tmp_path_factory):
    work = tmp_path_factory.mktemp("tiny")
    config = write_tiny_config(work)
    snakemake("round_t", "--cores", "2", "--configfile", str(config), cwd=work, timeout=1200)
    return work


def _outputs(work: Path) -> dict[str, float]:
    return {str(p.relative_to(work)): p.stat().st_mtime_ns
            for p in (work / "results").rglob("*") if p.is_file() and "logs" not in p.parts
            and "benchmarks" not in p.parts}


def test_round_produces_report_ranking_and_winners(tiny_round):
    res = tiny_round / "results" / "round_t"
    assert (res / "report.html").stat().st_size > 10_000
    winners = yaml.safe_load((res / "winners.yaml").read_text())
    assert winners["winners"] and set(winners["fixed_for_next"]) >= {"lr", "warmup", "ema"}
    ranking = (res / "ranking.csv").read_text().splitlines()
    assert len(ranking) == 1 + 4  # header + baseline, baseline_seed~1, two grid runs
    promoted = json.loads((res / "promoted.json").read_text())["promoted"]
    assert len(promoted) <= 1
    for run in promoted:
        assert (res / "runs" / run / "full_eval.nc").exists()
    # every run was decided at the probe point against the round's baseline reference; stopped
    # runs have no final checkpoint and no second evaluation (their record is the probe eval)
    reference = json.loads((res / "baseline_probe.json").read_text())
    assert reference["sigma_method"] == "seeds" and len(reference["scores"]) == 2
    for run_dir in (res / "runs").iterdir():
        decision = json.loads((run_dir / "decision.json").read_text())
        assert decision["baseline_mean"] == reference["mean"]
        assert (run_dir / "final" / "checkpoint.pt").exists() == decision["continue"]
        assert (run_dir / "small_eval.nc").exists() == decision["continue"]
        with xr.open_dataset(run_dir / "probe_eval.nc") as ds:
            assert "nrmse" in ds and ds.attrs["nrmse"] > 0
            # the baselines on the same samples: persistence, linear, the reference U-Net
            for key in ("nrmse_persistence", "nrmse_linear", "nrmse_reference"):
                assert ds.attrs[key] > 0, key
    ref = tiny_round / "results" / "reference" / "channel_tiny"
    assert (ref / "checkpoint.pt").exists() and (ref / "small_eval.nc").exists()
    with xr.open_dataset(ref / "small_eval.nc") as ds:
        assert ds.attrs["run"] == "reference_channel_tiny"


def test_forcing_one_run_reruns_only_it_and_its_dependents(tiny_round):
    work = tiny_round
    run = "lr~4.5e-4"
    before = _outputs(work)
    snakemake("round_t", "--cores", "2", "--forcerun",
              f"results/round_t/runs/{run}/probe/checkpoint.pt",
              "--configfile", str(work / "config.yaml"), cwd=work, timeout=900)
    after = _outputs(work)
    changed = {p for p in after if before.get(p) != after[p]}
    own = {p for p in changed if f"/runs/{run}/" in p}
    assert f"results/round_t/runs/{run}/probe/checkpoint.pt" in own
    assert f"results/round_t/runs/{run}/probe_eval.nc" in own
    others = {p for p in changed if "/runs/" in p and f"/runs/{run}/" not in p}
    assert not others, f"other runs were touched: {sorted(others)}"
    # the round-level products that depend on the run were redone; the data was not
    assert "results/round_t/ranking.csv" in changed
    assert "results/round_t/report.html" in changed
    assert not any(p.startswith(("results/data/", "results/reference/")) for p in changed)
