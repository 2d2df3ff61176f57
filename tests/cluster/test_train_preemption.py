"""workflow/scripts/train.py survives preemption: SIGUSR1 mid-run -> checkpoint in
<checkpoint>.partial + exit 75; the next attempt resumes from it and ends bit for bit where an
uninterrupted run ends. Runs the real script in a subprocess with a stand-in ``snakemake``
object (no Snakemake, no SLURM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import xarray as xr
from physweep_testkit import write_dataset

from physweep.model.surrogate import load_checkpoint
from physweep.train.loop import MACHINE_COLUMNS, PREEMPTED_EXIT_CODE

ROOT = Path(__file__).resolve().parents[2]  # tests/cluster/<this file>
SCRIPT = ROOT / "workflow" / "scripts" / "train.py"
TESTS = ROOT / "tests"

# Runs train.py with a stand-in `snakemake`; build_spec is swapped for the test kit's tiny spec,
# and every step prints its number and sleeps a little so the test can signal mid-run.
DRIVER = """
import json, runpy, sys, time
from types import SimpleNamespace
sys.path.insert(0, {tests!r})
import physweep.plan.spec as spec_mod
from physweep.train.loop import Trainer
from physweep_testkit import tiny_spec

args = json.loads(sys.argv[1])
spec_mod.build_spec = lambda tpl, winners: tiny_spec(**tpl)
real_step = Trainer.train_step
def slow_step(self):
    row = real_step(self)
    print("step", self.step, flush=True)
    time.sleep(args["sleep"])
    return row
Trainer.train_step = slow_step
smk = SimpleNamespace(
    log=[args["log"]], threads=args.get("threads", 1), wildcards=SimpleNamespace(training="t"),
    input=SimpleNamespace(train=args["train"], winners=[], probe=args.get("probe")),
    output=SimpleNamespace(checkpoint=args["checkpoint"], log=args["train_log"]),
    params=SimpleNamespace(template=args["template"], sources=[], resume=bool(args.get("probe")),
                           stop_fraction=args["stop_fraction"]))
runpy.run_path({script!r}, init_globals={{"snakemake": smk}}, run_name="__main__")
"""

STEPS = 16


def _start(data: Path, out: Path, template: dict, sleep: float = 0.0,
           threads: int = 1) -> subprocess.Popen:
    args = {"log": str(out / "job.log"), "train": str(data / "train.nc"),
            "checkpoint": str(out / "checkpoint.pt"), "train_log": str(out / "train_log.nc"),
            "template": template, "stop_fraction": 1.0, "sleep": sleep, "threads": threads}
    code = DRIVER.format(tests=str(TESTS), script=str(SCRIPT))
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["PHYSWEEP_GPU_COUNT"] = "0"
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(args)], cwd=out, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> int:
    try:
        proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"), with_ood=False)


TEMPLATE = {"budget_tokens": 64 * STEPS, "log_every": 3, "checkpoint_every": 0}


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    assert _finish(_start(data, out, TEMPLATE)) == 0
    return out


def _assert_same_run(a: Path, b: Path) -> None:
    ca, cb = load_checkpoint(a / "checkpoint.pt"), load_checkpoint(b / "checkpoint.pt")
    assert ca["step"] == cb["step"] == STEPS and ca["status"] == cb["status"] == "ok"
    for part in ("surrogate", "denoiser"):
        for key, value in ca["weights"][part].items():
            assert torch.equal(value, cb["weights"][part][key]), key
        for key, value in ca["ema"][part].items():
            assert torch.equal(value, cb["ema"][part][key]), key
    with xr.open_dataset(a / "train_log.nc") as la, xr.open_dataset(b / "train_log.nc") as lb:
        assert list(la["step"].values) == list(lb["step"].values)
        for name in la.data_vars:
            if name not in MACHINE_COLUMNS:
                assert (la[name].values == lb[name].values).all(), name


def test_sigusr1_checkpoints_exits_75_and_the_retry_resumes_bitwise(data, uninterrupted,
                                                                     tmp_path):
    proc = _start(data, tmp_path, TEMPLATE, sleep=0.15)
    step = 0
    for line in proc.stdout:  # wait until the run is under way, then preempt it
        if line.startswith("step"):
            step = int(line.split()[1])
            if step >= 4:
                proc.send_signal(signal.SIGUSR1)
                break
    assert _finish(proc) == PREEMPTED_EXIT_CODE, (tmp_path / "job.log").read_text()
    partial = tmp_path / "checkpoint.pt.partial"
    saved = load_checkpoint(partial)
    assert saved["status"] == "preempted" and step <= saved["step"] < STEPS
    assert not (tmp_path / "checkpoint.pt").exists()  # no output: Snakemake sees a failed job
    (tmp_path / "train_log.nc").unlink()  # what Snakemake's clean-up of the failed job does

    assert _finish(_start(data, tmp_path, TEMPLATE)) == 0  # the retry
    log = (tmp_path / "job.log").read_text()
    assert f"resuming the preempted attempt from {partial} (step {saved['step']})" in log
    assert not partial.exists()
    _assert_same_run(uninterrupted, tmp_path)


def test_a_partial_checkpoint_of_another_spec_is_discarded(data, uninterrupted, tmp_path):
    other = dict(TEMPLATE, lr=5e-4)
    proc = _start(data, tmp_path, other, sleep=0.05)
    for line in proc.stdout:
        if line.startswith("step 2"):
            proc.send_signal(signal.SIGUSR1)
            break
    assert _finish(proc) == PREEMPTED_EXIT_CODE
    assert (tmp_path / "checkpoint.pt.partial").exists()
    assert _finish(_start(data, tmp_path, TEMPLATE)) == 0
    assert "discarding" in (tmp_path / "job.log").read_text()
    _assert_same_run(uninterrupted, tmp_path)


def test_the_retry_resumes_under_another_thread_count(data, uninterrupted, tmp_path):
    """The job's threads are the machine, not the run: an attempt preempted with 1 thread is
    resumed by a retry with 2 (e.g. a requeue onto another node size), not discarded."""
    proc = _start(data, tmp_path, TEMPLATE, sleep=0.05, threads=1)
    for line in proc.stdout:
        if line.startswith("step 4"):
            proc.send_signal(signal.SIGUSR1)
            break
    assert _finish(proc) == PREEMPTED_EXIT_CODE
    (tmp_path / "train_log.nc").unlink()
    assert _finish(_start(data, tmp_path, TEMPLATE, threads=2)) == 0
    log = (tmp_path / "job.log").read_text()
    assert "resuming the preempted attempt" in log and "discarding" not in log
    done = load_checkpoint(tmp_path / "checkpoint.pt")
    assert done["step"] == STEPS and [s["threads"] for s in done["segments"]] == [1, 2]
    ref = load_checkpoint(uninterrupted / "checkpoint.pt")
    for key, value in ref["weights"]["surrogate"].items():  # equal up to float summation order
        torch.testing.assert_close(done["weights"]["surrogate"][key], value,
                                   rtol=1e-3, atol=1e-4)
