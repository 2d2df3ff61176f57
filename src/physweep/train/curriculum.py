"""Rollout-horizon curriculum: the training horizon grows in stages over the step budget.

With n = ``stages`` and H = ``max_horizon``, stage s (0-based) covers the steps
[s·total/n, (s+1)·total/n) and trains with horizon h_s = round(1 + (H − 1)·s/(n − 1))
(one stage: H from the start). An *expansion* is a stage change that raises the horizon.

``freeze_bottom_layers_on_expand``: from the first expansion on, the bottom layers -- the
encoder and the first depth // 2 approximator blocks (``Surrogate.bottom_parameters``) -- get
``requires_grad = False``; the decoder, the top approximator blocks, the U-shape fusions and the
corrector keep training. The state is a pure function of the step, so a resumed run re-derives it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the schedule itself is torch-free: the planner uses it at parse time
    from torch import nn


@dataclass(frozen=True)
class Curriculum:
    max_horizon: int
    stages: int
    total_steps: int
    freeze_on_expand: bool

    def __post_init__(self) -> None:
        if self.max_horizon < 1 or self.stages < 1 or self.total_steps < 1:
            raise ValueError("max_horizon, stages and total_steps must be >= 1")

    def stage(self, step: int) -> int:
        return min(self.stages - 1, step * self.stages // self.total_steps)

    def horizon_of_stage(self, stage: int) -> int:
        if self.stages == 1:
            return self.max_horizon
        return round(1 + (self.max_horizon - 1) * stage / (self.stages - 1))

    def horizon(self, step: int) -> int:
        return self.horizon_of_stage(self.stage(step))

    def expanded(self, step: int) -> bool:
        """Whether at least one expansion has happened by ``step``."""
        return self.horizon(step) > self.horizon_of_stage(0)

    def frozen(self, step: int) -> bool:
        return self.freeze_on_expand and self.expanded(step)

    def apply(self, step: int, model: nn.Module) -> None:
        """Set requires_grad of the bottom layers for ``step`` (model: a Surrogate)."""
        frozen = self.frozen(step)
        for p in model.bottom_parameters():
            p.requires_grad_(not frozen)

    def state_dict(self, step: int) -> dict:
        return {"stage": self.stage(step), "horizon": self.horizon(step),
                "frozen": self.frozen(step)}
