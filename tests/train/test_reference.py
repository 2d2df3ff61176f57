"""The reference U-Net: the same trainer, checkpoint and evaluation contract as the surrogate."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from physweep_testkit import synthetic_split, write_dataset

from physweep.evaluate.rollout import rollout_ensemble
from physweep.model.corrector import CorrectorConfig, load_denoiser
from physweep.model.surrogate import load_checkpoint, load_model
from physweep.model.unet import UNet, UNetConfig
from physweep.physics.gates import grid_info
from physweep.train.loop import Trainer, train_run
from physweep.train.reference import UNIFORM_TEMPERATURE, reference_spec

ROOT = Path(__file__).resolve().parents[2]


def spec(steps=4, **ref):
    preset = yaml.safe_load((ROOT / "config" / "presets" / "demo.yaml").read_text())
    reference = {**preset["reference"], "levels": 2, "width": 8, "steps": steps,
                 "samples_per_step": 2, **ref}
    train = {**preset["train"], "points_per_sample": 32, "device": "cpu"}
    return reference_spec(reference, train, "tiny")


def test_spec_from_the_demo_preset():
    s = spec()
    assert s["model_kind"] == "unet" and s["corrector"]["steps"] == 0
    t = s["train"]
    assert (t["inverse_encode"], t["inverse_decode"], t["projection_weight"]) == (0, 0, 0)
    assert t["sampler_temp"] == UNIFORM_TEMPERATURE
    assert t["budget_tokens"] // t["batch_tokens"] == 4  # steps


def test_untrained_unet_is_persistence_and_keeps_walls():
    split = synthetic_split()
    model = UNet(UNetConfig(width=8, levels=2))
    state = torch.randn(2, 3, 8, 16)
    nxt = model.step(state, split.mask[:2], split.coords)
    fluid = split.mask[:2].unsqueeze(1).expand_as(state)
    assert torch.equal(nxt[fluid], state[fluid])
    assert torch.equal(nxt[~fluid], torch.zeros_like(nxt[~fluid]))  # wall state (mean 0, std 1)
    with pytest.raises(ValueError, match="divisible by 8"):
        UNet(UNetConfig(width=8, levels=3)).step(torch.zeros(1, 3, 12, 16),
                                                 torch.ones(1, 12, 16, dtype=torch.bool),
                                                 torch.zeros(12, 16, 2))


def test_trains_checkpoints_and_evaluates_like_a_run(tmp_path):
    data = write_dataset(tmp_path / "data")
    out = train_run(spec(steps=120, lr=3e-3, ema=0.0), data, tmp_path / "ref.pt", tmp_path / "log.nc")
    assert out["status"] == "ok" and out["step"] == 120
    ckpt = load_checkpoint(tmp_path / "ref.pt")
    assert ckpt["model_kind"] == "unet"
    model, _ = load_model(tmp_path / "ref.pt")
    assert isinstance(model, UNet)
    denoiser, ccfg = load_denoiser(ckpt, model)
    assert denoiser is None and ccfg.steps == 0
    split = synthetic_split(n_traj=3, seed=1)
    res = rollout_ensemble(model, None, CorrectorConfig(steps=0), split, [0, 1], 2, 3, None,
                           torch.Generator().manual_seed(0), 2, 0.0, grid_info(split))
    assert res.fields.shape == (2, 2, 3, 3, 8, 16)
    assert torch.equal(res.fields[0], res.fields[1])  # deterministic members
    truth = split.fields[[0, 1], 3:6]
    persist = split.fields[[0, 1], 2:3].expand_as(truth)
    err = (res.fields[0] - truth).pow(2).mean()
    assert err < (persist - truth).pow(2).mean()  # 120 steps already beat persistence


def test_unet_refuses_a_corrector():
    s = spec()
    s["corrector"]["steps"] = 2
    with pytest.raises(ValueError, match="corrector.steps must be 0"):
        Trainer(s, synthetic_split())
