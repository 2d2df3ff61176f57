"""The DAG: every round dry-runs, shows the planned runs as jobs, requests GPUs under SLURM
(and none with use_gpu=false), gives every job a log of its own, and refuses a bad config before
any job runs."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml
from snakerun import ROOT, dry_run_jobs, jobs_of, snakemake

from physweep.plan.config import load_workflow_config
from physweep.plan.workflow import Workflow


@pytest.fixture(scope="module")
def workflow():
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    return Workflow(load_workflow_config(cfg, ROOT))


@pytest.mark.parametrize("round_name", ["round_a", "round_b", "round_c", "round_d"])
def test_dry_run_lists_the_planned_runs(tmp_path, workflow, round_name):
    out = snakemake("-n", "--cores", "2", round_name, cwd=tmp_path).stdout
    jobs = jobs_of(out, "eval_probe")  # one per run (training jobs: one per distinct training)
    runs = {j["run"] for j in jobs if j["round"] == round_name}
    assert runs == set(workflow.run_names(round_name))
    # rounds that inherit winners pull in the earlier rounds
    for earlier in workflow.plans[round_name].inherits:
        assert any(j["round"] == earlier for j in jobs)


@pytest.mark.parametrize("round_name,trainings,runs", [("round_a", 12, 13), ("round_b", 8, 12)])
def test_runs_differing_only_in_evaluation_knobs_train_once(tmp_path, workflow, round_name,
                                                             trainings, runs):
    """Round A's cadence block (cadence~8, cadence~32: the optimizer winner's values at two
    cadences) and round B's guidance x steps grid (6 runs, one training per steps value; the
    baseline's at steps 2) train each distinct training spec once; every run keeps its own
    evaluation, decision and training.json."""
    assert len(workflow.trainings(round_name)) == trainings
    out = snakemake("-n", "--cores", "2", round_name, cwd=tmp_path).stdout
    jobs = [j for j in dry_run_jobs(out) if j["wildcards"].get("round") == round_name]
    probes = [j["wildcards"]["training"] for j in jobs if j["rule"] == "train_probe"]
    assert len(probes) == len(set(probes)) == trainings
    assert set(probes) == set(workflow.trainings(round_name))
    for rule in ("eval_probe", "decide", "training_link"):
        assert len({j["wildcards"]["run"] for j in jobs if j["rule"] == rule}) == runs, rule
    # with every run continued, each training is continued once, each run evaluated once
    work = tmp_path / "decided"
    work.mkdir()
    _fake_decisions(work, workflow, round_name)
    jobs = [j for j in dry_run_jobs(snakemake("-n", "--cores", "2",
                                              f"results/{round_name}/report.html",
                                              cwd=work).stdout)
            if j["wildcards"].get("round") == round_name]
    finish = [j["wildcards"]["training"] for j in jobs if j["rule"] == "train_finish"]
    assert len(finish) == len(set(finish)) == trainings
    assert len([j for j in jobs if j["rule"] == "small_eval"]) == runs


def test_slurm_profile_requests_one_gpu_per_training_and_eval_job(tmp_path):
    # `snakemake --profile slurm round_c` from the repository root resolves ./slurm
    assert (ROOT / "slurm" / "config.yaml").exists()
    out = snakemake("--profile", "slurm", "-n", "--forceall", "round_c", cwd=ROOT).stdout
    for rule in ("train_probe", "eval_probe"):
        jobs = jobs_of(out, rule)
        assert jobs and all(j.get("gpu") == "1" for j in jobs), rule
    data = jobs_of(out, "prepare_data")
    assert all(j.get("gpu", "0") == "0" for j in data)


def test_use_gpu_false_requests_no_gpu_in_any_rule(tmp_path):
    """One switch for clusters without GPUs: --config use_gpu=false overrides the preset (full:
    every rule asks a GPU), the profile's set-resources and any gpu_model / gres gpu."""
    profile = tmp_path / "slurm"
    shutil.copytree(ROOT / "profiles" / "slurm", profile)
    cfg = yaml.safe_load((profile / "config.yaml").read_text())
    cfg["set-resources"]["train_probe"]["gpu_model"] = "a100"  # a site's GPU settings
    cfg["set-resources"]["train_finish"]["gres"] = "gpu:a100:1"
    (profile / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = snakemake("--profile", str(profile), "-n", "round_a", "--config", "preset=full",
                    "use_gpu=false", cwd=tmp_path).stdout
    jobs = dry_run_jobs(out)
    rules = {j["rule"] for j in jobs}
    assert {"prepare_data", "train_reference", "eval_reference", "train_probe", "eval_probe",
            "decide"} <= rules
    for job in jobs:
        res = job["resources"]
        assert res.get("gpu", "0") == "0", job
        assert "gpu_model" not in res and "gpu" not in res.get("gres", ""), job
    # without the switch the same profile and preset do request GPUs
    out = snakemake("--profile", str(profile), "-n", "round_a", "--config", "preset=full",
                    cwd=tmp_path).stdout
    gpu = {j["rule"] for j in dry_run_jobs(out) if j["resources"].get("gpu", "0") != "0"}
    assert {"prepare_data", "train_probe", "eval_probe"} <= gpu


def _fake_decisions(work: Path, workflow, round_name: str) -> None:
    """Every run continued, two promoted: the DAG then holds the jobs of every rule."""
    runs = workflow.run_names(round_name)
    for run in runs:
        path = work / "results" / round_name / "runs" / run / "decision.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"continue": True}))
    (work / "results" / round_name / "promoted.json").write_text(
        json.dumps({"promoted": runs[:2]}))


def test_every_job_has_a_log_of_its_own(tmp_path, workflow):
    """A failed job's error shows its own log: no two jobs share a log path, and every log path
    holds the job's wildcard values (a job of another run or round never writes there)."""
    _fake_decisions(tmp_path, workflow, "round_a")
    jobs = dry_run_jobs(snakemake("-n", "--cores", "2", "results/round_a/report.html",
                                  cwd=tmp_path).stdout)
    rules = {j["rule"] for j in jobs}
    assert {"prepare_data", "train_reference", "eval_reference", "train_probe", "eval_probe",
            "baseline_probe", "decide", "train_finish", "small_eval", "block_winner", "promote",
            "full_eval", "rank", "report", "plan"} <= rules, rules
    fresh = tmp_path / "fresh"  # and the real DAG of every round at once
    fresh.mkdir()
    jobs += dry_run_jobs(snakemake("-n", "--cores", "2", "all", cwd=fresh).stdout)
    seen = {}
    for job in jobs:
        key = (job["rule"], tuple(sorted(job["wildcards"].items())))
        if key in seen:
            assert seen[key] == job["log"], key
            continue
        seen[key] = job["log"]
        if job["rule"] == "all":
            continue
        assert job["log"], f"no log: {key}"
        for value in job["wildcards"].values():
            assert value in job["log"], f"{job['log']} lacks the wildcard value {value}"
    shared = {log: n for log, n in Counter(seen.values()).items() if log and n > 1}
    assert not shared, f"log paths shared by several jobs: {shared}"


def test_what_every_decision_waits_for_is_scheduled_first(tmp_path, workflow):
    """Every run's early-stop decision needs the reference's small eval and the baseline
    replicates' probe evals: those jobs, and the second-long ones that turn a probe into a
    decision or a block's winner, outrank the other runs' probes; a baseline replicate (always
    trained to the end) resumes first. Nothing else is raised."""
    baseline = set(workflow.baseline_runs("round_a"))
    base_trainings = {workflow.training_of("round_a", r) for r in baseline}
    first_rules = {"train_reference", "baseline_probe", "decide", "block_winner", "promote"}

    def expected(job):
        w = job["wildcards"]
        if job["rule"] in first_rules:
            return 1
        if job["rule"] == "eval_reference":
            return int(w["suite"] == "small")
        if job["rule"] in ("train_probe", "train_finish"):
            return int(w["training"] in base_trainings)
        if job["rule"] in ("eval_probe", "small_eval", "full_eval"):
            return int(w["run"] in baseline)
        return 0

    fresh = dry_run_jobs(snakemake("-n", "--cores", "2", "round_a", cwd=tmp_path).stdout)
    _fake_decisions(tmp_path, workflow, "round_a")
    decided = dry_run_jobs(snakemake("-n", "--cores", "2", "results/round_a/report.html",
                                     cwd=tmp_path).stdout)
    rules = {j["rule"] for j in fresh + decided}
    assert {"train_reference", "eval_reference", "train_probe", "eval_probe", "baseline_probe",
            "decide", "train_finish", "small_eval", "full_eval"} <= rules, rules
    wrong = [(j["rule"], j["wildcards"], j["priority"]) for j in fresh + decided
             if j["priority"] != expected(j)]
    assert not wrong, wrong
    assert sum(j["priority"] > 0 for j in fresh if j["rule"] == "train_probe") == len(
        base_trainings) < sum(j["rule"] == "train_probe" for j in fresh)


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


def test_a_broken_round_file_stops_only_the_rounds_that_need_it(tmp_path):
    rounds = tmp_path / "rounds"
    shutil.copytree(ROOT / "config" / "rounds", rounds)
    (rounds / "round_x.yaml").write_text("name: round_x\nobjective: nrmse\nblocks: [\n")  # broken
    ok = snakemake("-n", "--cores", "2", "round_a", "--config", f"rounds_dir={rounds}",
                   cwd=tmp_path)
    assert "round_x.yaml" in ok.stderr and "warning" in ok.stderr  # named, not fatal
    assert jobs_of(ok.stdout, "eval_probe")
    bad = snakemake("-n", "--cores", "2", "round_x", "--config", f"rounds_dir={rounds}",
                    cwd=tmp_path, check=False)
    text = bad.stdout + bad.stderr
    assert bad.returncode != 0 and "round round_x cannot be planned" in text
    assert "round_x.yaml" in text and "Traceback" not in text
