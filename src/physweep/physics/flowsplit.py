"""In-memory form of one dataset split (train / test / ood), shared by trainer and evaluator."""

from __future__ import annotations

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
