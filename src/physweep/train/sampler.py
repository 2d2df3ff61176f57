"""Regime sampler: harder regimes (higher running loss) are drawn more often.

    p_r = φ / R + (1 − φ) · q_r,   q_r ∝ n_r · exp(ℓ̃_r / T),   ℓ̃_r = ℓ̄_r / mean_r' ℓ̄_r'

ℓ̄_r is an exponential moving average (decay ``ema``) of the training loss of samples drawn from
regime r (initialised to 1, so the first draws are proportional to n_r); dividing by the mean
makes T unit-free. n_r > 0 is 1 for a regime with training trajectories and 0 otherwise
(regimes are balanced, not trajectories). T = ``sampler_temp`` > 0: higher loss -> sampled more,
T -> ∞ uniform over the regimes present, T -> 0 always the hardest regime. A trajectory is then
drawn uniformly within the regime.

Floor: R is the number of regimes present and φ = ``FLOOR`` = 0.5, so every regime keeps at
least half its uniform share (1 / (2R); 1/6 with three regimes) whatever its loss. Without it,
at T = 0.7 the easy regimes fell to ~3 % of the draws within 50 steps (their loss is near 0,
the irregular one's far above the mean), the model saw almost no steady or periodic flow and
invented motion on them at test time. T still moves the split above the floor.
"""

from __future__ import annotations

import torch

#: Share of the draws spread uniformly over the regimes present (the anti-starvation floor).
FLOOR = 0.5


class RegimeSampler:
    def __init__(self, regime_of_traj: torch.Tensor, n_regimes: int, temperature: float,
                 ema: float = 0.9):
        if temperature <= 0:
            raise ValueError(f"sampler temperature must be > 0, got {temperature}")
        self.regime_of_traj = regime_of_traj.long()
        self.temperature = float(temperature)
        self.ema = ema
        counts = torch.bincount(self.regime_of_traj, minlength=n_regimes)
        self.present = counts > 0
        self.loss_ema = torch.ones(n_regimes, dtype=torch.float64)

    def probabilities(self) -> torch.Tensor:
        rel = self.loss_ema / self.loss_ema[self.present].mean()
        logits = (rel / self.temperature).masked_fill(~self.present, float("-inf"))
        uniform = self.present.double() / self.present.sum()
        return FLOOR * uniform + (1 - FLOOR) * torch.softmax(logits, dim=0)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n,) trajectory indices."""
        regimes = torch.multinomial(self.probabilities(), n, replacement=True,
                                    generator=generator)
        out = []
        for r in regimes.tolist():
            members = torch.nonzero(self.regime_of_traj == r).flatten()
            pick = torch.randint(len(members), (1,), generator=generator)
            out.append(members[pick])
        return torch.cat(out)

    def update(self, traj: torch.Tensor, losses: torch.Tensor) -> None:
        """Fold per-sample losses (finite ones) into the per-regime running means."""
        for t, loss in zip(traj.tolist(), losses.detach().double().tolist(), strict=True):
            if loss == loss and abs(loss) != float("inf"):
                r = int(self.regime_of_traj[t])
                self.loss_ema[r] = self.ema * self.loss_ema[r] + (1 - self.ema) * loss

    def state_dict(self) -> dict:
        return {"loss_ema": self.loss_ema.clone(), "temperature": self.temperature}

    def load_state_dict(self, state: dict) -> None:
        self.loss_ema = state["loss_ema"].clone().double()
