"""The DAG: every round dry-runs, shows the planned runs as jobs, requests GPUs under SLURM,
and refuses a bad config before any job runs."""

from __future__ import annotations

import shutil

import pytest
import yaml
from snakerun import ROOT, jobs_of, snakemake

from physweep.plan.config import load_workflow_config
from physweep.plan.workflow import Workflow


@pytest.fixture(scope="module")
def workflow():
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    return Workflow(load_workflow_config(cfg, ROOT))


@pytest.mark.parametrize("round_name", ["round_a", "round_b", "round_c", "round_d"])
def test_dry_run_lists_the_planned_runs(tmp_path, workflow, round_name):
    out = snakemake("-n", "--cores", "2", round_name, cwd=tmp_path).stdout
    jobs = jobs_of(out, "train_probe")
    runs = {j["run"] for j in jobs if j["round"] == round_name}
    assert runs == set(workflow.run_names(round_name))
    # rounds that inherit winners pull in the earlier rounds
    for earlier in workflow.plans[round_name].inherits:
        assert any(j["round"] == earlier for j in jobs)


def test_slurm_profile_requests_one_gpu_per_training_and_eval_job(tmp_path):
    # `snakemake --profile slurm round_c` from the repository root resolves ./slurm
    assert (ROOT / "slurm" / "config.yaml").exists()
    out = snakemake("--profile", "slurm", "-n", "--forceall", "round_c", cwd=ROOT).stdout
    for rule in ("train_probe", "eval_probe"):
        jobs = jobs_of(out, rule)
        assert jobs and all(j.get("gpu") == "1" for j in jobs), rule
    data = jobs_of(out, "prepare_data")
    assert all(j.get("gpu", "0") == "0" for j in data)


def test_local_run_requests_no_gpu(tmp_path):
    out = snakemake("-n", "--cores", "2", "round_a", cwd=tmp_path).stdout
    assert all(j.get("gpu") == "0" for j in jobs_of(out, "train_probe"))


def test_lint_is_clean():
    proc = snakemake("--lint", cwd=ROOT)
    assert "Congratulations" in proc.stdout + proc.stderr


def test_bad_config_stops_before_any_job(tmp_path):
    rounds = tmp_path / "rounds"
    shutil.copytree(ROOT / "config" / "rounds", rounds)
    data = yaml.safe_load((rounds / "round_a.yaml").read_text())
    data["blocks"][0]["knobs"]["learning_rate"] = [1e-3]
    (rounds / "round_a.yaml").write_text(yaml.safe_dump(data))
    proc = snakemake("--cores", "2", "round_a", "--config", f"rounds_dir={rounds}",
                     cwd=tmp_path, check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "round_a.yaml" in text and "blocks[0].knobs.learning_rate" in text
    assert "unknown knob" in text
    assert not (tmp_path / "results").exists()
