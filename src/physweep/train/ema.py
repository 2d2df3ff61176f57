"""Exponential moving average of model weights: ema ← decay · ema + (1 − decay) · weights."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Shadow copy of a module; floating tensors (parameters and buffers) are averaged,
    integer buffers copied. ``decay`` = 0 tracks the weights exactly."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        src = model.state_dict()
        for name, shadow in self.module.state_dict().items():
            value = src[name].detach()
            if shadow.dtype.is_floating_point:
                shadow.mul_(self.decay).add_(value, alpha=1.0 - self.decay)
            else:
                shadow.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
