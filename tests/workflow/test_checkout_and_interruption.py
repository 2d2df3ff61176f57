"""A finished tiny round in a checkout of its own: moving the checkout reruns nothing (no
absolute path in any rule's params), and an interrupted rerun of one run (README, "Rerun one
run") is finished by `--rerun-incomplete` instead of looking done."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import xarray as xr
from snakerun import SNAKEMAKE, snakemake, write_tiny_checkout

pytestmark = pytest.mark.slow

CONFIG = "tiny/config.yaml"  # relative to the checkout, which is also the working directory


def _smk(checkout: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return snakemake(*args, "--configfile", CONFIG, cwd=checkout,
                     snakefile=checkout / "Snakefile", **kw)


@pytest.fixture(scope="module")
def tiny_checkout(tmp_path_factory):
    checkout = tmp_path_factory.mktemp("site") / "checkout"
    write_tiny_checkout(checkout)
    _smk(checkout, "round_t", "--cores", "2", timeout=1200)
    return checkout


def _recorded_params(checkout: Path) -> dict[str, str]:
    """Snakemake's record of every output's params (what its params-change trigger compares)."""
    out = {}
    for f in (checkout / ".snakemake" / "metadata").iterdir():
        record = json.loads(f.read_text())
        out[f"{record.get('rule')} ({f.name})"] = json.dumps(record.get("params"))
    return out


def test_moving_the_checkout_reruns_nothing(tiny_checkout, tmp_path):
    params = _recorded_params(tiny_checkout)
    assert params, "no Snakemake metadata recorded"
    leaked = {k for k, v in params.items() if str(tiny_checkout) in v}
    assert not leaked, f"absolute checkout paths in recorded params: {sorted(leaked)[:3]}"

    moved = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(tiny_checkout, moved, symlinks=True)  # copy2: mtimes kept, .snakemake too
    gone = tiny_checkout.with_name("checkout.moved-away")
    tiny_checkout.rename(gone)  # the old place is gone: nothing may still read from it
    try:
        proc = _smk(moved, "-n", "round_t")
    finally:
        gone.rename(tiny_checkout)
    text = proc.stdout + proc.stderr
    assert "Nothing to be done" in text, text[-6000:]


def _wait_for(predicate, limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {limit_s} s waiting for {what}")


def test_an_interrupted_rerun_of_one_run_is_finished_by_rerun_incomplete(tiny_checkout,
                                                                         tmp_path):
    work = tmp_path / "checkout"
    shutil.copytree(tiny_checkout, work, symlinks=True)
    rnd = work / "results" / "round_t"
    run = next(d.name for d in sorted((rnd / "runs").iterdir())
               if json.loads((d / "decision.json").read_text())["continue"])
    training = json.loads((rnd / "runs" / run / "training.json").read_text())["training"]
    final = rnd / "trainings" / training / "final"
    watched = [final / "checkpoint.pt", final / "train_log.nc", rnd / "runs" / run /
               "small_eval.nc", rnd / "ranking.csv", rnd / "winners.yaml", rnd / "report.html"]
    before = {p: p.stat().st_mtime_ns for p in watched}

    # the README's "rerun one run", killed (SIGKILL to its process group) while it trains
    job_log = work / "results" / "logs" / "round_t" / "trainings" / training / "train_finish.log"
    job_log.unlink()
    cmd = [SNAKEMAKE, "-s", str(work / "Snakefile"), "round_t", "--cores", "2",
           "--configfile", CONFIG, "--forcerun",
           f"results/round_t/trainings/{training}/final/checkpoint.pt"]
    with open(tmp_path / "killed.log", "w") as out:
        proc = subprocess.Popen(cmd, cwd=work, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            _wait_for(lambda: job_log.exists()
                      and re.search(r"step \d+/\d+", job_log.read_text()) is not None,
                      600, "the forced train_finish job to train")
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    # Snakemake removed the forced job's outputs before it ran; what depends on them is stale
    assert not (final / "checkpoint.pt").exists() and not (final / "train_log.nc").exists()
    assert (rnd / "report.html").exists()

    _smk(work, "--unlock")
    proc = _smk(work, "round_t", "--cores", "2", "--rerun-incomplete",
                # and a probe trained with 1 thread finishes with 2 (the machine is not the run)
                "--set-threads", "train_finish=2", timeout=900)
    text = proc.stdout + proc.stderr
    assert "Nothing to be done" not in text, text[-4000:]
    for path in watched:  # rebuilt: the run's final checkpoint and log, its eval, rank, report
        assert path.exists(), path
        assert path.stat().st_mtime_ns > before[path], f"{path} was not redone"
    with xr.open_dataset(final / "train_log.nc") as log:
        segments = json.loads(log.attrs["hardware_segments"])
        steps_total = int(log.attrs["steps_total"])
    assert [s["threads"] for s in segments] == [1, 2], segments
    assert segments[-1]["to_step"] == steps_total
    # and now the round is complete
    assert "Nothing to be done" in _smk(work, "-n", "round_t").stdout
