"""The training job (physweep.train.job): a probe then its continuation, a preempted attempt's
partial checkpoint resumed only for the same run identity, an identical training reused."""

import logging

import torch
from physweep_testkit import tiny_spec, write_dataset

from physweep.model.surrogate import load_checkpoint
from physweep.train.job import run_training_job
from physweep.train.loop import train_run
from physweep.train.shared import IDENTITY_FILE

LOG = logging.getLogger("test")


def _stage(root, training, stage):
    d = root / "trainings" / training / stage
    d.mkdir(parents=True)
    return d / "checkpoint.pt", d / "train_log.nc"


def test_probe_continuation_partial_and_reuse(tmp_path):
    data = write_dataset(tmp_path / "data", with_ood=False)
    spec = tiny_spec()
    ckpt, log = _stage(tmp_path, "a", "probe")
    assert run_training_job(spec, "id1", data, ckpt, log, 0.5, None, 1, LOG) == 0
    assert load_checkpoint(ckpt)["step"] == 3 and (ckpt.parent / IDENTITY_FILE).exists()
    assert not ckpt.with_name("checkpoint.pt.partial").exists()

    # a continuation resumes the probe; a partial file of another spec is discarded first
    final, final_log = _stage(tmp_path, "a", "final")
    other = tiny_spec(lr=5e-4)
    train_run(other, data, final.with_name("checkpoint.pt.partial"), tmp_path / "x.nc",
              stop_fraction=0.5)
    assert run_training_job(spec, "id1", data, final, final_log, 1.0, ckpt, 2, LOG) == 0
    whole = train_run(spec, data, tmp_path / "whole.pt", tmp_path / "whole.nc")
    assert whole["step"] == load_checkpoint(final)["step"] == 6
    a = load_checkpoint(final)["ema"]["surrogate"]
    b = load_checkpoint(tmp_path / "whole.pt")["ema"]["surrogate"]
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)  # resumed = uninterrupted

    # another training of the same round with the same identity copies, does not train
    ckpt_b, log_b = _stage(tmp_path, "b", "probe")
    assert run_training_job(spec, "id1", data, ckpt_b, log_b, 0.5, None, 1, LOG) == 0
    assert ckpt_b.read_bytes() == ckpt.read_bytes()
    assert "reused_from" in (ckpt_b.parent / IDENTITY_FILE).read_text()
