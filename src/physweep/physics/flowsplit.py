"""In-memory form of one dataset split (train / test / ood), shared by trainer and evaluator."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

CHANNELS = ("u", "v", "p")


@dataclass
class FlowSplit:
    """Trajectories of one split on a regular grid; fields in physical units.

    Attributes
    ----------
    fields : (N, T, C, H, W) float32, channels ``CHANNELS`` (u, v in m/s; p in Pa / rho).
    mask : (N, H, W) bool, True where the cell is fluid (False: obstacle or wall).
    coords : (H, W, 2) float32 physical (x, y) of every cell centre in m.
    inflow : (N, H) float32 prescribed inlet u-profile of every trajectory (m/s).
    regime : (N,) int64 index into ``regime_names``.
    regime_names : the regime labels of the whole dataset (same order in every split).
    geometry : per-trajectory geometry label (e.g. "circle", "two_circles").
    reynolds : (N,) float32 Reynolds number of every trajectory.
    dt : time between stored snapshots in s.
    dx : grid spacing in m (dx = dy).
    attrs : free-form metadata read from the file (solver settings, seeds, provenance).
    strouhal : optional (N,) float32 measured Strouhal number f D / u_mean (NaN: no oscillation).
    amplitude : optional (N,) float32 measured wake fluctuation std(v) / u_mean.
    """

    fields: torch.Tensor
    mask: torch.Tensor
    coords: torch.Tensor
    inflow: torch.Tensor
    regime: torch.Tensor
    regime_names: list[str]
    geometry: list[str]
    reynolds: torch.Tensor
    dt: float
    dx: float
    attrs: dict = field(default_factory=dict)
    strouhal: torch.Tensor | None = None
    amplitude: torch.Tensor | None = None

    @property
    def n_traj(self) -> int:
        return int(self.fields.shape[0])

    @property
    def n_time(self) -> int:
        return int(self.fields.shape[1])

    @property
    def grid_shape(self) -> tuple[int, int]:
        return int(self.fields.shape[-2]), int(self.fields.shape[-1])


def synthetic_split(n_traj: int, n_time: int, ny: int, nx: int, seed: int = 0,
                    height_m: float = 0.41) -> FlowSplit:
    """A split of the real structure at any grid size, made in memory (no solver run).

    For sizing and benchmarks at the full preset's 128 x 256 grid, whose generated dataset takes
    GPU-hours (``benchmarks/gpu_check.py``, the memory tests): a channel of height ``height_m``
    with one disk obstacle per trajectory (diameter 0.1-0.3 H, in the first third), a parabolic
    inflow of mean 0.6-0.8 m/s, and fields that are smooth travelling waves on top of the inflow
    (zero inside the obstacle, the wall state the data store). Regimes alternate between
    "periodic" and "irregular" (labels of the dataset's fixed list). Only shapes, dtypes and
    value ranges are realistic, not the flow.
    """
    from physweep.physics.dataset_config import REGIME_LABELS

    g = torch.Generator().manual_seed(seed)
    dx = height_m / ny
    y = (torch.arange(ny, dtype=torch.float64) + 0.5) * dx
    x = (torch.arange(nx, dtype=torch.float64) + 0.5) * dx
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    coords = torch.stack([xx, yy], dim=-1).float()  # (H, W, 2)
    r = torch.rand(n_traj, 4, generator=g, dtype=torch.float64)
    radius = (0.05 + 0.1 * r[:, 0]) * height_m
    cx = (0.15 + 0.15 * r[:, 1]) * nx * dx
    cy = (0.4 + 0.2 * r[:, 2]) * height_m
    mask = ((xx - cx.view(-1, 1, 1)) ** 2 + (yy - cy.view(-1, 1, 1)) ** 2) > radius.view(-1, 1, 1) ** 2
    u_mean = 0.6 + 0.2 * r[:, 3]
    eta = y / height_m
    inflow = (6.0 * eta * (1.0 - eta)).view(1, -1) * u_mean.view(-1, 1)  # (N, H)
    t = torch.arange(n_time, dtype=torch.float64).view(-1, 1, 1) * 0.05
    phase = 2 * math.pi * torch.rand(n_traj, 3, generator=g, dtype=torch.float64)
    fields = torch.empty(n_traj, n_time, 3, ny, nx, dtype=torch.float32)
    kx, ky = 2 * math.pi / (nx * dx / 4), math.pi / height_m
    for i in range(n_traj):
        wave = [torch.sin(k * kx * xx - 2.0 * t + phase[i, c]) * torch.cos(k * ky * yy)
                for c, k in enumerate((1, 2, 3))]  # (T, H, W) each
        u = inflow[i].view(1, -1, 1) + 0.3 * u_mean[i] * wave[0]
        v = 0.3 * u_mean[i] * wave[1]
        p = 0.1 * u_mean[i] ** 2 * wave[2]
        fields[i] = (torch.stack([u, v, p], dim=1) * mask[i]).float()
    regime = torch.tensor([REGIME_LABELS.index("periodic" if i % 2 == 0 else "irregular")
                           for i in range(n_traj)], dtype=torch.int64)
    return FlowSplit(fields=fields, mask=mask, coords=coords, inflow=inflow.float(),
                     regime=regime, regime_names=list(REGIME_LABELS),
                     geometry=["circle"] * n_traj,
                     reynolds=torch.full((n_traj,), 150.0), dt=0.05, dx=float(dx),
                     attrs={"synthetic": 1})
