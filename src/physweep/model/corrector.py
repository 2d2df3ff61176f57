"""Latent diffusion-style corrector in the spirit of PDE-Refiner (Lippe et al., NeurIPS 2023).

The surrogate's approximator makes one plain prediction ẑ_{t+1} = A(z_t). Every ``cadence``
rollout steps the corrector refines it with K = ``steps`` refinement steps, k = 1 … K:

    σ_k = sigma_min ** (k / K)                       (σ_1 largest, σ_K = sigma_min)
    z̃   = z + σ_k · ε,   ε ~ N(0, I)                 (noise from the caller's generator)
    ε̂   = denoiser(z̃, z_t, k)                        (conditioned on the previous latent and k)
    z   ← z̃ − σ_k · ε̂                                (one-step denoise)

then one physics-guidance step on the decoded fields (λ = ``guidance``):

    g = ∇_z R(decode(z))                             R = physics residual, mean over the batch
    z ← z − λ · sigma_min · g / rms(g)

i.e. the guidance step moves the latent by λ·sigma_min RMS per element -- the noise scale of the
finest refinement step, so λ = 1 is a correction of the size the denoiser itself resolves, and
the step size does not depend on the units of R. λ = 0 is the unguided refiner.

Training (``denoiser_loss``): the same noise-prediction loss, k uniform in 1 … K, the clean target
is the encoder's latent of the true next state and the condition the encoder's latent of the
current state; it runs inside the surrogate's training step (same step and token budget).

``steps = 0`` or a cadence longer than the horizon gives exactly the plain latent rollout. The
corrector is stochastic: members of an ensemble are rollouts with different noise (batch the
initial latent M times; every batch row draws its own noise).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from physweep.model.surrogate import MLP, CrossBlock, Surrogate, make_norm


@dataclass(frozen=True)
class CorrectorConfig:
    cadence: int = 4  # refine every `cadence` rollout steps (steps cadence, 2·cadence, ...)
    steps: int = 2  # K refinement steps per correction (0 = corrector off)
    guidance: float = 1.0  # λ: physics-guidance strength (0 = unguided)
    # σ_min: smallest refinement noise, in units of the latent (LayerNorm-ed, O(1) per element);
    # PDE-Refiner uses ~4e-7 on raw fields, a latent tolerates far less precision.
    sigma_min: float = 2e-2
    ensemble_members: int = 4  # M rollouts with different noise for uncertainty metrics

    def __post_init__(self) -> None:
        if self.cadence < 1:
            raise ValueError(f"cadence must be >= 1, got {self.cadence}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.guidance < 0:
            raise ValueError(f"guidance must be >= 0, got {self.guidance}")
        if not 0 < self.sigma_min < 1:
            raise ValueError(f"sigma_min must be in (0, 1), got {self.sigma_min}")
        if self.ensemble_members < 1:
            raise ValueError(f"ensemble_members must be >= 1, got {self.ensemble_members}")

    def sigma(self, k: int) -> float:
        return self.sigma_min ** (k / self.steps)

    def fires(self, step: int) -> bool:
        """Whether the corrector runs after rollout step ``step`` (1-based)."""
        return self.steps > 0 and step % self.cadence == 0


class Denoiser(nn.Module):
    """ε̂ = f(z̃, z_prev, k): token-wise fusion, one attention block over latent tokens."""

    def __init__(self, dim: int, heads: int, max_steps: int, norm: str = "layernorm"):
        super().__init__()
        self.fuse = nn.Linear(2 * dim, dim)
        self.k_embed = nn.Embedding(max(max_steps, 1) + 1, dim)
        self.block = CrossBlock(dim, heads, norm)
        self.norm = make_norm(norm, dim)
        self.head = MLP(dim, 2 * dim, dim)

    def forward(self, z_noisy: torch.Tensor, z_prev: torch.Tensor, k: torch.Tensor
                ) -> torch.Tensor:
        h = self.fuse(torch.cat([z_noisy, z_prev], dim=-1)) + self.k_embed(k)[:, None]  # (B,L,D)
        h = self.block(h, h)
        return self.head(self.norm(h))  # (B, L, D) predicted noise


def build_denoiser(model: Surrogate, cfg: CorrectorConfig) -> Denoiser:
    m = model.cfg
    return Denoiser(m.model_dim, m.heads, cfg.steps, m.norm)


def denoiser_loss(denoiser: Denoiser, cfg: CorrectorConfig, z_next: torch.Tensor,
                  z_prev: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Noise-prediction MSE at σ_k, k ~ U{1..K}; 0 (no graph) when the corrector is off."""
    if cfg.steps == 0:
        return z_next.new_zeros(())
    b = z_next.shape[0]
    k = torch.randint(1, cfg.steps + 1, (b,), generator=generator).to(z_next.device)
    sigma = (cfg.sigma_min ** (k.float() / cfg.steps)).view(b, 1, 1)
    eps = torch.randn(z_next.shape, generator=generator).to(z_next.device)
    eps_hat = denoiser(z_next + sigma * eps, z_prev, k)
    return (eps_hat - eps).pow(2).mean()


def refine(denoiser: Denoiser, cfg: CorrectorConfig, z: torch.Tensor, z_prev: torch.Tensor,
           generator: torch.Generator,
           residual_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """K refinement steps then one guidance step (module docstring); returns refined z."""
    b = z.shape[0]
    with torch.no_grad():
        for k in range(1, cfg.steps + 1):
            sigma = cfg.sigma(k)
            eps = torch.randn(z.shape, generator=generator).to(z.device)
            z_noisy = z + sigma * eps
            kk = torch.full((b,), k, dtype=torch.long, device=z.device)
            z = z_noisy - sigma * denoiser(z_noisy, z_prev, kk)
    if cfg.guidance > 0 and residual_fn is not None:
        z = guide(z, residual_fn, cfg.guidance * cfg.sigma_min)
    return z


def guide(z: torch.Tensor, residual_fn: Callable[[torch.Tensor], torch.Tensor],
          step: float) -> torch.Tensor:
    """z - step · g / rms(g), g = ∇_z sum_b R_b(z): a normalised descent step on the residual."""
    with torch.enable_grad():
        zg = z.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(residual_fn(zg).sum(), zg)
    rms = g.pow(2).mean(dim=(1, 2), keepdim=True).sqrt().clamp_min(1e-12)
    return (z - step * g / rms).detach()


@dataclass
class CorrectedRollout:
    latents: torch.Tensor  # (B, T, L, D) latent after each rollout step
    corrector_calls: int  # number of corrections (each = `steps` denoiser calls + 1 guidance)
    denoiser_calls: int


def latent_rollout(model: Surrogate, z0: torch.Tensor, horizon: int,
                   cfg: CorrectorConfig | None = None, denoiser: Denoiser | None = None,
                   generator: torch.Generator | None = None,
                   residual_fn: Callable[[torch.Tensor], torch.Tensor] | None = None
                   ) -> CorrectedRollout:
    """Apply the approximator ``horizon`` times from z0 (B, L, D), correcting when due.

    Without cfg / denoiser, or with steps = 0, or cadence > horizon this is exactly the plain
    latent rollout (no noise is drawn, the generator is untouched).
    """
    z = z0
    out = []
    calls = 0
    for t in range(1, horizon + 1):
        z_prev = z
        z = model.approximate(z)
        if cfg is not None and denoiser is not None and cfg.fires(t):
            if generator is None:
                raise ValueError("the corrector is stochastic: pass a torch.Generator")
            z = refine(denoiser, cfg, z, z_prev, generator, residual_fn)
            calls += 1
        out.append(z)
    steps = cfg.steps if cfg is not None else 0
    return CorrectedRollout(torch.stack(out, dim=1), calls, calls * steps)


def load_denoiser(ckpt: dict, model: Surrogate) -> tuple[Denoiser | None, CorrectorConfig]:
    """Rebuild the EMA denoiser and its config from a trainer checkpoint dict (None for the
    reference U-Net, which has no corrector)."""
    from physweep.configs import from_dict

    cfg = from_dict(CorrectorConfig, ckpt["corrector_config"], where="checkpoint corrector")
    if ckpt.get("model_kind", "upt") != "upt":
        return None, cfg
    den = build_denoiser(model, cfg)
    den.load_state_dict(ckpt["ema"]["denoiser"])
    den.eval()
    return den, cfg
