"""A tiny round really runs end to end; runs that differ only in the evaluation-time cadence
share one training; forcing a run's training re-executes it and what depends on it, forcing a
run's evaluation re-evaluates only that run, and nothing else."""

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
    assert len(ranking) == 1 + 6  # header + baseline, baseline_seed~1, two lr runs, two cadences
    promoted = json.loads((res / "promoted.json").read_text())["promoted"]
    assert len(promoted) <= 1
    for run in promoted:
        assert (res / "runs" / run / "full_eval.nc").exists()
    # every run was decided at the probe point against the round's baseline reference; stopped
    # runs have no final checkpoint and no second evaluation (their record is the probe eval)
    reference = json.loads((res / "baseline_probe.json").read_text())
    assert reference["sigma_method"] == "seeds" and len(reference["scores"]) == 2
    trainings: dict[str, list[str]] = {}
    for run_dir in (res / "runs").iterdir():
        training = json.loads((run_dir / "training.json").read_text())["training"]
        trainings.setdefault(training, []).append(run_dir.name)
    # 6 runs, 5 trainings: cadence~8 and cadence~32 train the optimizer winner's values once
    assert len(trainings) == 5 and ["cadence~32", "cadence~8"] in map(sorted, trainings.values())
    assert {p.name for p in (res / "trainings").iterdir()} == set(trainings)
    assert not any((run_dir / "probe").exists() for run_dir in (res / "runs").iterdir())
    for training, runs in trainings.items():
        continued = [json.loads((res / "runs" / r / "decision.json").read_text())["continue"]
                     for r in runs]
        assert (res / "trainings" / training / "probe" / "checkpoint.pt").exists()
        # the training continues when any run on it continues
        assert (res / "trainings" / training / "final" / "checkpoint.pt").exists() == any(continued)
    for run_dir in (res / "runs").iterdir():
        decision = json.loads((run_dir / "decision.json").read_text())
        assert decision["baseline_mean"] == reference["mean"]
        assert (run_dir / "small_eval.nc").exists() == decision["continue"]
        with xr.open_dataset(run_dir / "probe_eval.nc") as ds:
            assert "nrmse" in ds and ds.attrs["nrmse"] > 0
            # the baselines on the same samples: persistence, linear, the reference U-Net
            for key in ("nrmse_persistence", "nrmse_linear", "nrmse_reference"):
                assert ds.attrs[key] > 0, key
    # one training, two evaluations: each rolled out at its own cadence (demo map: 8->2, 32->8)
    cadence = {}
    for run in ("cadence~8", "cadence~32"):
        with xr.open_dataset(res / "runs" / run / "probe_eval.nc") as ds:
            spec = json.loads(ds.attrs["run_spec"])
            assert ds.attrs["run"] == run and spec["training"].startswith("training ")
            cadence[run] = (spec["corrector"]["cadence"], spec["training"],
                            ds.attrs["checkpoint"])
    assert cadence["cadence~8"][0] == 2 and cadence["cadence~32"][0] == 8
    assert cadence["cadence~8"][1:] == cadence["cadence~32"][1:]
    ref = tiny_round / "results" / "reference" / "channel_tiny"
    assert (ref / "checkpoint.pt").exists() and (ref / "small_eval.nc").exists()
    with xr.open_dataset(ref / "small_eval.nc") as ds:
        assert ds.attrs["run"] == "reference_channel_tiny"


def _training(work: Path, run: str) -> str:
    return json.loads((work / "results" / "round_t" / "runs" / run / "training.json"
                       ).read_text())["training"]


def test_a_decided_continuation_is_scheduled_before_later_blocks_are_decided(tiny_round,
                                                                             tmp_path):
    """A baseline replicate continues as soon as it is decided, not when the last run of the
    round (the cadence block, fixed from the optimizer block's winner) is: with the cadence
    decisions and the replicate's final training moved away, the dry run of the round target
    lists the replicate's continuation and its small eval (everything is moved back after)."""
    import shutil

    from snakerun import dry_run_jobs

    work = tiny_round
    res = work / "results" / "round_t"
    replicate = _training(work, "baseline_seed~1")
    moved = {res / "runs" / run / "decision.json": tmp_path / f"{run}.json"
             for run in ("cadence~8", "cadence~32")}
    moved[res / "trainings" / replicate / "final"] = tmp_path / "final"
    for src, dst in moved.items():
        shutil.move(src, dst)
    try:
        out = snakemake("round_t", "-n", "--configfile", str(work / "config.yaml"), cwd=work)
    finally:
        for src, dst in moved.items():
            shutil.move(dst, src)
    jobs = dry_run_jobs(out.stdout)
    finish = [j for j in jobs if j["rule"] == "train_finish"]
    assert [j["wildcards"].get("training") for j in finish] == [replicate], out.stdout[-3000:]
    assert any(j["rule"] == "small_eval" and j["wildcards"].get("run") == "baseline_seed~1"
               for j in jobs)
    assert sum(j["rule"] == "decide" for j in jobs) == 2  # the cadence runs, still undecided


def test_forcing_one_run_reruns_only_it_and_its_dependents(tiny_round):
    """The README's "rerun one run": force its training (training.json names it). The run and
    the block whose values come from its block's winner (cadence) may be redone; no other."""
    work = tiny_round
    run = "lr~4.5e-4"
    training = _training(work, run)
    before = _outputs(work)
    snakemake("round_t", "--cores", "2", "--forcerun",
              f"results/round_t/trainings/{training}/probe/checkpoint.pt",
              "--configfile", str(work / "config.yaml"), cwd=work, timeout=900)
    after = _outputs(work)
    changed = {p for p in after if before.get(p) != after[p]}
    assert f"results/round_t/trainings/{training}/probe/checkpoint.pt" in changed
    assert f"results/round_t/runs/{run}/probe_eval.nc" in changed
    log = (work / "results" / "logs" / "round_t" / "trainings" / training / "train_probe.log")
    assert "training finished" in log.read_text()  # retrained, not copied from a twin
    dependent = {run, "cadence~8", "cadence~32"}  # cadence takes the optimizer block's winner
    others = {p for p in changed if "/runs/" in p
              and not any(f"/runs/{r}/" in p for r in dependent)}
    assert not others, f"other runs were touched: {sorted(others)}"
    kept = {_training(work, r) for r in ("baseline", "baseline_seed~1", "lr~2e-4")}
    assert not {p for p in changed if any(f"/trainings/{t}/" in p for t in kept)}
    # the round-level products that depend on the run were redone; the data was not
    assert "results/round_t/ranking.csv" in changed
    assert "results/round_t/report.html" in changed
    assert not any(p.startswith(("results/data/", "results/reference/")) for p in changed)


def test_forcing_one_evaluation_reevaluates_only_that_run(tiny_round):
    """cadence~8 and cadence~32 share a training: forcing cadence~8's probe eval redoes its
    eval (and decision, ranking, report), not the shared training nor cadence~32's eval."""
    work = tiny_round
    before = _outputs(work)
    snakemake("round_t", "--cores", "2", "--forcerun",
              "results/round_t/runs/cadence~8/probe_eval.nc",
              "--configfile", str(work / "config.yaml"), cwd=work, timeout=900)
    after = _outputs(work)
    changed = {p for p in after if before.get(p) != after[p]}
    assert "results/round_t/runs/cadence~8/probe_eval.nc" in changed
    assert not {p for p in changed if "/trainings/" in p}, sorted(changed)
    assert not {p for p in changed if "/runs/" in p and "/runs/cadence~8/" not in p}
    assert "results/round_t/ranking.csv" in changed
