"""Reference model: a small convolutional U-Net on the stored grid.

Not a playbook knob and not swept: it is trained once per dataset by the same trainer
(``physweep.train.loop``, ``spec["model_kind"] = "unet"``) and evaluated by the same suite, so
every evaluation can show how far the tuned surrogate is from a plain, well-understood model on
the same samples (measured when issue #11 was filed: 263 k parameters, 0.145 test nRMSE
after 510 CPU s on the earlier demo data).

One step (B batch, C fields, H × W grid; fields normalised by the training statistics):

    [state (C), fluid mask (1), x, y in [0, 1] (2)]            (B, C + 3, H, W)
      -> ``levels`` encoder levels (width, 2·width, 4·width, …): two 3×3 convs (GELU), then
         2×2 average pooling
      -> bottleneck: two 3×3 convs at the coarsest width
      -> decoder levels: nearest upsampling, concatenation with the skip, two 3×3 convs
      -> 1×1 conv to C channels                                = the change over one step
    next = state + change; obstacle cells are set to the wall state (all fields 0).

A rollout applies the step repeatedly on its own output (autoregressive on the grid). The output
convolution starts at zero, so an untrained U-Net predicts persistence. The grid must be
divisible by 2**levels. Unlike the UPT surrogate this model reads and writes a full regular grid:
it is the reference, not the model the playbook tunes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from physweep.model.surrogate import FieldUnits


@dataclass(frozen=True)
class UNetConfig:
    """Sizes of the reference U-Net (defaults: 3 levels, width 24)."""

    in_channels: int = 3  # fields (u, v, p)
    width: int = 24  # channels at the finest level; doubled at every coarser level
    levels: int = 3  # poolings (the grid must be divisible by 2**levels)

    def __post_init__(self) -> None:
        for name in ("in_channels", "width", "levels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"UNetConfig.{name} must be a positive int, got {value!r}")


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GELU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.GELU())


class UNet(FieldUnits):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        c, w = cfg.in_channels, cfg.width
        widths = [w * 2**i for i in range(cfg.levels)]  # per level; the bottleneck keeps the last
        self.down = nn.ModuleList()
        c_prev = c + 3
        for wi in widths:
            self.down.append(_double_conv(c_prev, wi))
            c_prev = wi
        self.mid = _double_conv(widths[-1], widths[-1])
        below = [*widths[1:], widths[-1]]  # channels arriving from the level below
        self.up = nn.ModuleList(_double_conv(below[i] + widths[i], widths[i])
                                for i in reversed(range(cfg.levels)))
        self.out = nn.Conv2d(widths[0], c, 1)
        nn.init.zeros_(self.out.weight)  # starts as persistence; the out conv's input is
        nn.init.zeros_(self.out.bias)  # non-zero, so its gradient is not blocked
        self.register_units(c)

    # --- the model -----------------------------------------------------------------------------
    def step(self, state: torch.Tensor, mask: torch.Tensor, coords: torch.Tensor,
             extra: torch.Tensor | None = None) -> torch.Tensor:
        """One step: (B, C, H, W) normalised state, (B, H, W) bool fluid mask, (H, W, 2)
        physical cell centres -> (B, C, H, W) normalised state one snapshot later. ``extra``
        (B, E, H, W): more input channels after the state (a model built with
        ``in_channels + E`` inputs to its first block; benchmarks/sparse_input_unet.py)."""
        b, _, hh, ww = state.shape
        f = 2**self.cfg.levels
        if hh % f or ww % f:
            raise ValueError(f"U-Net with {self.cfg.levels} levels needs a grid divisible by {f}, "
                             f"got {hh}x{ww}")
        xy = ((coords - self.pos_lo) / (self.pos_hi - self.pos_lo)).permute(2, 0, 1)  # (2, H, W)
        m = mask.to(state.dtype).unsqueeze(1)  # (B, 1, H, W)
        extra = [] if extra is None else [extra.to(state.dtype)]
        h = torch.cat([state, *extra, m, xy.to(state.dtype).expand(b, -1, -1, -1)], dim=1)
        skips = []
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = F.avg_pool2d(h, 2)
        h = self.mid(h)
        for block in self.up:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = block(torch.cat([h, skips.pop()], dim=1))
        nxt = state + self.out(h)
        wall = self.normalize(torch.zeros(state.shape[1], dtype=state.dtype, device=state.device),
                              dim=0).view(1, -1, 1, 1)
        return torch.where(m > 0, nxt, wall)

    def rollout_grid(self, state: torch.Tensor, mask: torch.Tensor, coords: torch.Tensor,
                     horizon: int) -> torch.Tensor:
        """(B, C, H, W) normalised start state -> (B, horizon, C, H, W) normalised predictions."""
        out = []
        for _ in range(horizon):
            state = self.step(state, mask, coords)
            out.append(state)
        return torch.stack(out, dim=1)

    def bottom_parameters(self) -> list[nn.Parameter]:
        """The encoder half (the curriculum's freeze contract; the reference never freezes)."""
        return [p for block in self.down for p in block.parameters()]
