"""Shared test helpers: a tiny synthetic dataset and tiny run specs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from physweep.physics.flowsplit import FlowSplit

H, W, T, N_TRAJ = 8, 16, 10, 6
REGIMES = ["laminar", "shedding"]


def synthetic_split(n_traj: int = N_TRAJ, n_time: int = T, seed: int = 0) -> FlowSplit:
    """Smooth travelling waves on an 8×16 channel with a 2×2 obstacle (random phases)."""
    g = torch.Generator().manual_seed(seed)
    dx = 0.1
    y = (torch.arange(H) + 0.5) * dx
    x = (torch.arange(W) + 0.5) * dx
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    coords = torch.stack([xx, yy], dim=-1)  # (H, W, 2)
    mask = torch.ones(n_traj, H, W, dtype=torch.bool)
    mask[:, 3:5, 4:6] = False
    inflow = 6 * (y / (H * dx)) * (1 - y / (H * dx))
    inflow = inflow.expand(n_traj, H) * (1 + 0.2 * torch.rand(n_traj, 1, generator=g))
    t = torch.arange(n_time) * 0.1
    phase = 2 * math.pi * torch.rand(n_traj, 3, generator=g)
    fields = torch.empty(n_traj, n_time, 3, H, W)
    for i in range(n_traj):
        for c in range(3):
            k = 1 + c
            fields[i, :, c] = (inflow[i].view(1, H, 1) * (c == 0)
                               + 0.3 * torch.sin(k * xx - 3 * t.view(-1, 1, 1) + phase[i, c])
                               * torch.cos(yy * k))
    fields = fields * mask[:, None, None]
    regime = torch.arange(n_traj) % 2
    return FlowSplit(fields=fields.float(), mask=mask, coords=coords.float(),
                     inflow=inflow.float(), regime=regime, regime_names=list(REGIMES),
                     geometry=["square"] * n_traj, reynolds=torch.full((n_traj,), 100.0),
                     dt=0.1, dx=dx)


def open_branches(model: torch.nn.Module) -> torch.nn.Module:
    """Stand in for trained weights: residual branches start closed (zero output layers), so
    at initialisation a knob acting inside them could not show in the outputs."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear) and not m.weight.any():
                torch.nn.init.normal_(m.weight, std=0.1)
    return model


def write_split(split: FlowSplit, path: Path) -> None:
    """Write a split in the docs/architecture.md data layout."""
    f = split.fields.numpy()
    ds = xr.Dataset(
        {"u": (("traj", "time", "y", "x"), f[:, :, 0]),
         "v": (("traj", "time", "y", "x"), f[:, :, 1]),
         "p": (("traj", "time", "y", "x"), f[:, :, 2]),
         "mask": (("traj", "y", "x"), split.mask.numpy().astype(np.int8)),
         "inflow": (("traj", "y"), split.inflow.numpy()),
         "regime": ("traj", np.asarray([split.regime_names[r] for r in split.regime])),
         "geometry": ("traj", np.asarray(split.geometry)),
         "reynolds": ("traj", split.reynolds.numpy())},
        coords={"x": split.coords[0, :, 0].numpy(), "y": split.coords[:, 0, 1].numpy(),
                "time": np.arange(split.n_time) * split.dt},
        attrs={"regime_names": json.dumps(split.regime_names), "dt": split.dt, "dx": split.dx})
    ds.to_netcdf(path)


def write_dataset(root: Path, with_ood: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_split(synthetic_split(seed=0), root / "train.nc")
    write_split(synthetic_split(n_traj=3, seed=1), root / "test.nc")
    if with_ood:
        write_split(synthetic_split(n_traj=2, seed=2), root / "ood.nc")
    return root


def tiny_spec(run: str = "tiny", **train) -> dict:
    from physweep.configs import to_dict
    from physweep.model.corrector import CorrectorConfig
    from physweep.model.surrogate import SurrogateConfig
    from physweep.train.loop import TrainConfig

    model = SurrogateConfig(model_dim=16, depth=2, heads=2, latent_tokens=8, window_size=4,
                            supernodes=16)
    corr = CorrectorConfig(cadence=2, steps=1, ensemble_members=2)
    base = dict(lr=1e-3, warmup=0.2, ema=0.9, max_horizon=2, curriculum_stages=2,
                batch_tokens=64, points_per_sample=32, micro_batch=1, budget_tokens=64 * 6,
                log_every=1, device="cpu", threads=1)
    base.update(train)
    return {"run": run, "round": "test", "seed": 0, "model": to_dict(model),
            "corrector": to_dict(corr), "train": to_dict(TrainConfig(**base)), "nominal": {}}
