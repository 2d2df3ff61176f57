"""A tiny round on a real one-node SLURM cluster (.ci/slurm/start_cluster.sh), through the
project's SLURM profile: the jobs run there (SLURM's own records say so), one training job is
preempted mid-run (``scontrol requeue``: SIGTERM -> checkpoint -> exit 75 -> the requeued job
resumes from ``<checkpoint>.partial``), and the round's results equal a local run's.

Needs root and apt-get (or the packages already installed); skipped otherwise. Every wait is
bounded; Snakemake is stopped with SIGINT (it then scancels its jobs)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import xarray as xr
from snakerun import tiny_training_of, write_tiny_config

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(os.sys.executable).parent / "snakemake")
CI = ROOT / ".ci" / "slurm"
GPU_RULES = ("train_probe", "train_finish", "eval_probe", "small_eval", "full_eval")
PREEMPT_RULE, PREEMPT_RUN = "train_finish", "baseline_seed~1"  # a baseline always continues

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _run(cmd: list[str], cwd: Path, limit_s: int, env: dict | None = None):
    """Bounded: SIGINT at limit_s (Snakemake cancels its SLURM jobs), SIGKILL 30 s later."""
    return subprocess.run(["timeout", "-s", "INT", "-k", "30", str(limit_s), *cmd], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=limit_s + 60)


def _say(config: pytest.Config, line: str) -> None:
    """Put a measured figure into the test log even when the test passes (CI keeps it)."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        print(f"[slurm] {line}")
        return
    with capture.global_and_fixture_disabled():
        print(f"\n[slurm] {line}", flush=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, pytestconfig):
    if os.geteuid() != 0:
        pytest.skip("the SLURM test needs root (installs packages, runs the daemons)")
    have_slurm = all(shutil.which(b) for b in ("slurmctld", "slurmd", "munged", "sbatch"))
    if not have_slurm and not shutil.which("apt-get"):
        pytest.skip("SLURM is not installed and apt-get is unavailable")
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_CI_GPUS": "2"}  # two fake GPUs: two jobs at a time on 2 cores
    t0 = time.monotonic()
    proc = subprocess.run([str(CI / "start_cluster.sh"), str(state)], capture_output=True,
                          text=True, env=env, timeout=900)
    if proc.returncode == 3:
        pytest.skip(f"cannot set up SLURM here: {proc.stderr.strip()[-500:]}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    _say(pytestconfig, f"cluster set-up: {time.monotonic() - t0:.1f} s; {proc.stderr.strip()}")
    os.environ["SLURM_CONF"] = str(state / "etc" / "slurm.conf")
    try:
        yield state
    finally:
        subprocess.run([str(CI / "stop_cluster.sh"), str(state)], timeout=120)
        os.environ.pop("SLURM_CONF", None)


@pytest.fixture(scope="module")
def local_round(tmp_path_factory):
    work = tmp_path_factory.mktemp("local")
    cfg = write_tiny_config(work)
    proc = _run([SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "round_t", "--cores", "2",
                 "--configfile", str(cfg)], work, 1200)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return work


def _squeue() -> list[dict]:
    out = subprocess.run(["squeue", "-h", "--states=all", "-o", "%i|%T|%k"],
                         capture_output=True, text=True, timeout=30).stdout
    return [dict(zip(("id", "state", "comment"), line.split("|", 2), strict=True))
            for line in out.splitlines() if line.count("|") >= 2]


class Preempter(threading.Thread):
    """Waits (bounded) until the training job of PREEMPT_RUN is a few steps in, then
    ``scontrol requeue``s it and lets the requeued job start at once (SLURM would hold a
    requeued job back for about two minutes)."""

    def __init__(self, work: Path, limit_s: float):
        super().__init__(daemon=True)
        # the run's checkpoints come from its training (shared trainings, rules/train.smk)
        self.training = tiny_training_of(work / "config.yaml", PREEMPT_RUN)
        self.log = (work / "results" / "logs" / "round_t" / "trainings" / self.training
                    / f"{PREEMPT_RULE}.log")
        self.deadline = time.monotonic() + limit_s
        self.stop = threading.Event()
        self.jobid: str | None = None
        self.step_at_signal: int | None = None
        self.events: list[str] = []

    def _step(self) -> int:
        try:
            steps = re.findall(r"step (\d+)/\d+", self.log.read_text())
        except OSError:
            return 0
        return int(steps[-1]) if steps else 0

    def run(self) -> None:
        key = re.sub(r"[^A-Za-z0-9]", "", self.training)
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            step = self._step()
            if step >= 14:  # train_finish resumes the probe at step ~11 of 30
                jobs = [j for j in _squeue() if j["state"] == "RUNNING"
                        and j["comment"].startswith(f"rule_{PREEMPT_RULE}")
                        and key in re.sub(r"[^A-Za-z0-9]", "", j["comment"])]
                if jobs:
                    self.jobid, self.step_at_signal = jobs[0]["id"], step
                    subprocess.run(["scontrol", "requeue", self.jobid], check=True, timeout=30)
                    self.events.append(f"requeued {self.jobid} at step {step}")
                    break
            time.sleep(0.1)
        while self.jobid and not self.stop.is_set() and time.monotonic() < self.deadline:
            state = {j["id"]: j["state"] for j in _squeue()}.get(self.jobid)
            if state == "PENDING":
                subprocess.run(["scontrol", "update", f"JobId={self.jobid}", "StartTime=now"],
                               timeout=30)
                self.events.append(f"released {self.jobid}")
                return
            time.sleep(0.2)


def _metrics(csv: Path) -> pd.DataFrame:
    df = pd.read_csv(csv).set_index("run").sort_index()
    machine = re.compile(r"(s_per_step|j_per_step|per_joule|seconds|energy|time|joule|cost|"
                         r"objective_value|score)", re.I)
    return df[[c for c in df.columns if not machine.search(c)]]


def test_round_on_slurm_with_preemption_equals_local(cluster, local_round, tmp_path, pytestconfig):
    work = tmp_path
    cfg = write_tiny_config(work)
    # the generated data is not what is under test: reuse the local run's (saves a minute)
    shutil.copytree(local_round / "results" / "data", work / "results" / "data")
    set_resources = [f"{r}:{k}={v}" for r in GPU_RULES
                     for k, v in (("gpu", 1), ("cpus_per_task", 1), ("mem_mb", 2000))]
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "round_t",
           "--profile", str(ROOT / "profiles" / "slurm"), "--configfile", str(cfg),
           # test-sized overrides of the profile: 2 CPUs, fast status checks
           "--set-resources", *set_resources,
           "--set-threads", *[f"{r}=1" for r in GPU_RULES],
           "--default-resources", "mem_mb=1500", "runtime=30",
           "--slurm-init-seconds-before-status-checks", "2",
           "--latency-wait", "5", "--jobs", "4"]
    preempter = Preempter(work, limit_s=480)
    preempter.start()
    t0 = time.monotonic()
    try:
        proc = _run(cmd, work, 540)
    finally:
        preempter.stop.set()
        preempter.join(timeout=30)
    wall = time.monotonic() - t0
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{proc.returncode}\n{log[-8000:]}"

    # --- the jobs ran on SLURM: ids from Snakemake's log, confirmed by slurmctld and squeue ---
    ids = sorted(set(re.findall(r"submitted with SLURM jobid (\d+)", log)), key=int)
    n_jobs = len(re.findall(r"^(?:rule|checkpoint) \w+:", log, re.M))
    assert len(ids) >= 10, log[-4000:]
    ctld = (cluster / "log" / "slurmctld.log").read_text()
    done = set(re.findall(r"_job_complete: JobId=(\d+) done", ctld))
    assert set(ids) <= done, f"not completed per slurmctld: {set(ids) - done}"
    seen = {j["id"]: j for j in _squeue()}  # MinJobAge=600: finished jobs are still listed
    assert all(seen[i]["state"] == "COMPLETED" for i in ids), seen
    gpu_jobs = [i for i in ids if seen[i]["comment"].startswith(tuple(f"rule_{r}" for r in GPU_RULES))]
    show = subprocess.run(["scontrol", "show", "job", gpu_jobs[0]], capture_output=True,
                          text=True, timeout=30).stdout
    assert "gres:gpu" in show.replace("gres/gpu", "gres:gpu"), show
    _say(pytestconfig, f"SLURM round: {len(ids)} jobs ({n_jobs} rule blocks) in {wall:.0f} s, "
                       f"{wall / len(ids):.1f} s per job; preemption: {preempter.events}")

    # --- preemption: requeued by SLURM, checkpointed, resumed from the partial checkpoint ---
    assert preempter.jobid in ids, f"the preemption did not happen: {preempter.events}"
    assert re.search(rf"Requeuing JobId={preempter.jobid}\b", ctld), "no requeue in slurmctld.log"
    restarts = re.search(r"Restarts=(\d+)", subprocess.run(
        ["scontrol", "show", "job", preempter.jobid], capture_output=True, text=True,
        timeout=30).stdout)
    assert restarts and int(restarts.group(1)) >= 1
    run_dir = work / "results" / "round_t" / "trainings" / preempter.training / "final"
    job_log = preempter.log.read_text()
    assert "resuming the preempted attempt" in job_log, job_log[-3000:]
    assert not list(run_dir.glob("*.partial"))

    # --- the same results as the local run ---
    a = _metrics(local_round / "results" / "round_t" / "ranking.csv")
    b = _metrics(work / "results" / "round_t" / "ranking.csv")
    pd.testing.assert_frame_equal(a, b)
    for run in a.index:
        trained = (work / "results/round_t/runs" / run / "small_eval.nc").exists()
        record = "small_eval.nc" if trained else "probe_eval.nc"
        with xr.open_dataset(local_round / "results/round_t/runs" / run / record) as x, \
                xr.open_dataset(work / "results/round_t/runs" / run / record) as y:
            assert x.attrs["nrmse"] == y.attrs["nrmse"], run
            assert (x["nrmse"].values == y["nrmse"].values).all(), run
    print(a.to_string())
