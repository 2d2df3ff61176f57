"""The trainer's progress file: cadence, content, and what a real training job leaves."""

from __future__ import annotations

import json

import pytest
from physweep_testkit import tiny_spec, write_dataset

from physweep.train.progress import PROGRESS_EVERY_S, PROGRESS_NAME, ProgressWriter, read_progress


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_writes_at_the_first_step_then_every_interval_and_at_the_end(tmp_path):
    clock = Clock()
    path = tmp_path / PROGRESS_NAME
    w = ProgressWriter(path, "lr~3e-4", stop_step=25, total_steps=50, batch_tokens=2048,
                       budget_tokens=2048 * 50, every_s=10.0, clock=clock)
    written = []
    for step in range(1, 26):
        clock.t += 0.5  # 0.5 s per step: 10 s are 20 steps
        if w.step(step, loss=2.0 - step * 0.01, step_time_s=0.5):
            written.append(step)
    assert written == [1, 21]  # the first step, then 10 s later
    mid = read_progress(path)
    assert mid["step"] == 21 and mid["status"] == "training" and mid["stop_step"] == 25
    assert mid["s_per_step"] == pytest.approx(0.5) and mid["tokens_per_s"] == pytest.approx(4096)
    assert mid["loss"] == pytest.approx(sum(2.0 - s * 0.01 for s in range(2, 22)) / 20)
    assert mid["eta_s"] == pytest.approx(4 * 0.5)
    assert mid["total_steps"] == 50 and mid["budget_tokens"] == 2048 * 50
    w.finish("ok", 25)
    end = read_progress(path)
    assert end["status"] == "ok" and end["eta_s"] == 0.0 and w.writes == 3
    assert not [p for p in tmp_path.iterdir() if p.name != PROGRESS_NAME]  # no temp files left


def test_eta_and_forced_writes(tmp_path):
    clock = Clock()
    w = ProgressWriter(tmp_path / "p.json", "r", stop_step=100, total_steps=100,
                       batch_tokens=64, budget_tokens=6400, every_s=60.0, clock=clock)
    w.step(1, 1.0, 2.0)
    clock.t += 2
    assert not w.step(2, 1.0, 2.0)
    assert w.step(3, float("nan"), 2.0, force=True)  # e.g. a periodic checkpoint
    data = read_progress(tmp_path / "p.json")
    assert data["eta_s"] == pytest.approx(97 * 2.0)
    assert data["loss"] is None  # a non-finite step shows as such (JSON null)


def test_unreadable_or_foreign_files_read_as_none(tmp_path):
    (tmp_path / "a.json").write_text('{"step": 3')  # cut short
    (tmp_path / "b.json").write_text(json.dumps({"step": 3}))  # not a progress file
    assert read_progress(tmp_path / "a.json") is None
    assert read_progress(tmp_path / "b.json") is None
    assert read_progress(tmp_path / "missing.json") is None
    assert PROGRESS_EVERY_S == 10.0


def test_a_training_job_keeps_progress_beside_its_checkpoint(tmp_path):
    from physweep.train.loop import train_run

    data = write_dataset(tmp_path / "data", with_ood=False)
    out = tmp_path / "run" / "probe"
    res = train_run(tiny_spec(), data, out / "checkpoint.pt.partial", out / "train_log.nc",
                    stop_fraction=0.5)
    p = read_progress(out / PROGRESS_NAME)
    assert p["status"] == "ok" and p["step"] == res["step"] == 3 and p["stop_step"] == 3
    assert p["total_steps"] == 6 and p["run"] == "tiny" and p["tokens_per_s"] > 0
    assert p["time"] >= p["started"]
