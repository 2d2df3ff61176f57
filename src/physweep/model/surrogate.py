"""UPT-style neural surrogate: point-set encoder -> latent approximator -> query decoder.

Read top to bottom: building blocks, then the config, then the model, then presets and
checkpoint helpers. Reference: Universal Physics Transformers (Alkin et al., NeurIPS 2024,
arXiv 2402.12365).

Data flow (B batch, N input points, S supernodes, L latent tokens, Q query points, D model dim):

    positions (B, N, 2) physical coords, values (B, N, C) normalised fields
      -> per-point embedding + positional encoding          (B, N, D)
      -> supernode pooling: every supernode averages messages
         from its K nearest input points                    (B, S, D)
      -> perceiver pooling with L learned queries           (B, L, D)   = z_t       (encode)
      -> depth windowed-attention blocks (U-shape skips)    (B, L, D)   = z_{t+1}   (approximate)
      -> perceiver cross-attention from query positions     (B, Q, C)               (decode)

Latent rollout: encode once, apply ``approximate`` repeatedly, decode only where needed.

Anchored (residual) output: a prediction at query positions is ``anchor + decode(z_t)``, where
the anchor is the *initial* state carried from the input point set to the queries by
inverse-distance k-NN interpolation (``ANCHOR_NEIGHBOURS`` points; exact on input points). The
trainer passes the stored grid state at t0 as the anchor of its grid targets, so the decoder
learns the change since t = 0 rather than the interpolation error of its sparse training input.
The decoder head starts at zero, so an untrained model predicts persistence.
The anchor needs only the input point set, so the model stays discretization-agnostic.

Units: the model reads positions in physical coordinates (metres) and rescales them to [0, 1]
with the ``pos_lo`` / ``pos_hi`` buffers; it reads and writes fields *normalised* by the
per-channel dataset statistics in the ``field_mean`` / ``field_std`` buffers (``normalize`` /
``denormalize``). All four buffers are set by the trainer from the training split and travel in
the state dict, so a checkpoint is self-contained.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from physweep.configs import from_dict, to_dict
from physweep.io import atomic_path

# Number of input points that send a message to each supernode (UPT uses a radius graph; a kNN
# graph has a fixed degree, so the cost is the same for every discretisation).
SUPERNODE_NEIGHBOURS = 8

# Input points interpolated (inverse squared distance) to carry the initial state to a query.
ANCHOR_NEIGHBOURS = 4
# Queries processed per chunk of the anchor's distance matrix (bounds memory at full scale).
ANCHOR_CHUNK = 4096

# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------


def make_norm(kind: str, dim: int) -> nn.Module:
    if kind == "layernorm":
        return nn.LayerNorm(dim)
    if kind == "rmsnorm":
        return nn.RMSNorm(dim)
    raise ValueError(f"unknown norm {kind!r}")


class MLP(nn.Module):
    def __init__(self, dim_in: int, dim_hidden: int, dim_out: int):
        super().__init__()
        self.fc1 = nn.Linear(dim_in, dim_hidden)
        self.fc2 = nn.Linear(dim_hidden, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head attention; ``context`` None = self-attention."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        *lead, n, d = x.shape
        m = context.shape[-2]
        h = self.heads
        q = self.q(x).reshape(*lead, n, h, d // h).transpose(-2, -3)  # (..., h, n, d/h)
        k, v = self.kv(context).reshape(*lead, m, 2, h, d // h).unbind(-3)
        k, v = k.transpose(-2, -3), v.transpose(-2, -3)  # (..., h, m, d/h)
        y = F.scaled_dot_product_attention(q, k, v)  # (..., h, n, d/h)
        return self.out(y.transpose(-2, -3).reshape(*lead, n, d))


class CrossBlock(nn.Module):
    """Perceiver block: queries attend to a context, then an MLP (pre-norm, residual)."""

    def __init__(self, dim: int, heads: int, norm: str):
        super().__init__()
        self.norm_q = make_norm(norm, dim)
        self.norm_ctx = make_norm(norm, dim)
        self.attn = Attention(dim, heads)
        self.norm_mlp = make_norm(norm, dim)
        self.mlp = MLP(dim, 4 * dim, dim)

    def forward(self, q: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        q = q + self.attn(self.norm_q(q), self.norm_ctx(ctx))
        return q + self.mlp(self.norm_mlp(q))


class WindowBlock(nn.Module):
    """Transformer block whose attention is restricted to 1-D windows of the token order.

    The L latent tokens are cut into ceil(L / w) consecutive windows of w tokens (the last one
    zero-padded and masked out); a token attends only inside its window. Attention scores cost
    O(L·w) memory and time instead of O(L²): at L = 512, w = 12 that is 43 windows of 12×12
    scores, 6,192 per head instead of 262,144. Odd blocks shift the windows by w // 2 (Swin-style)
    so information crosses window borders over depth; when w >= L there is a single window
    (full attention) and no shift.
    """

    def __init__(self, dim: int, heads: int, window: int, shift: bool, norm: str):
        super().__init__()
        self.window = window
        self.shift = shift
        self.norm1 = make_norm(norm, dim)
        self.attn = Attention(dim, heads)
        self.norm2 = make_norm(norm, dim)
        self.mlp = MLP(dim, 4 * dim, dim)

    def window_layout(self, n_tokens: int) -> tuple[int, int, int]:
        """(number of windows, window length, shift) used for ``n_tokens`` tokens."""
        w = min(self.window, n_tokens)
        shift = w // 2 if (self.shift and w < n_tokens) else 0
        return math.ceil(n_tokens / w), w, shift

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, n, d = z.shape
        n_win, w, shift = self.window_layout(n)
        h = self.norm1(z)
        if shift:
            h = torch.roll(h, -shift, dims=1)
        pad = n_win * w - n
        h = F.pad(h, (0, 0, 0, pad))  # (B, n_win*w, D)
        hw = h.reshape(b, n_win, w, d)  # (B, n_win, w, D)
        valid = torch.ones(n_win * w, dtype=torch.bool, device=z.device)
        if pad:
            valid[n:] = False
        hw = self.attn_windows(hw, valid.reshape(n_win, w))
        h = hw.reshape(b, n_win * w, d)[:, :n]
        if shift:
            h = torch.roll(h, shift, dims=1)
        z = z + h
        return z + self.mlp(self.norm2(z))

    def attn_windows(self, hw: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        a = self.attn
        b, nw, w, d = hw.shape
        hd = a.heads
        q = a.q(hw).reshape(b, nw, w, hd, d // hd).transpose(2, 3)  # (B, nw, h, w, d/h)
        k, v = a.kv(hw).reshape(b, nw, w, 2, hd, d // hd).unbind(3)
        k, v = k.transpose(2, 3), v.transpose(2, 3)
        mask = valid[None, :, None, None, :]  # keys outside the sequence (padding) are hidden
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, nw, h, w, d/h)
        return a.out(y.transpose(2, 3).reshape(b, nw, w, d))


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SurrogateConfig:
    """Effective sizes of one surrogate (defaults: the small CPU demo)."""

    in_channels: int = 3  # fields per point (u, v, p)
    model_dim: int = 64  # token width D
    depth: int = 4  # approximator blocks
    heads: int = 4  # attention heads (must divide model_dim)
    latent_tokens: int = 32  # L: the UPT information bottleneck
    window_size: int = 8  # tokens per 1-D attention window in the approximator
    supernodes: int = 64  # S: pooled points in the encoder (<= input points; fewer -> all)
    u_shape: bool = True  # skip block i -> block depth-1-i (U-Net style)
    pos_encoding: str = "sincos"  # "sincos" fixed Fourier features | "learned" MLP of coords
    norm: str = "layernorm"  # "layernorm" | "rmsnorm"
    channel_separated: bool = False  # embed each field channel by its own MLP, then sum

    def __post_init__(self) -> None:
        for name in ("in_channels", "model_dim", "depth", "heads", "latent_tokens",
                     "window_size", "supernodes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SurrogateConfig.{name} must be a positive int, got {value!r}")
        if self.model_dim % self.heads:
            raise ValueError(f"model_dim {self.model_dim} not divisible by heads {self.heads}")
        if self.model_dim % 4:
            raise ValueError("model_dim must be a multiple of 4 (2-D sin-cos encoding)")
        if self.pos_encoding not in ("sincos", "learned"):
            raise ValueError(f"pos_encoding must be sincos|learned, not {self.pos_encoding!r}")
        if self.norm not in ("layernorm", "rmsnorm"):
            raise ValueError(f"norm must be 'layernorm' or 'rmsnorm', not {self.norm!r}")
        for name in ("u_shape", "channel_separated"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"SurrogateConfig.{name} must be a bool")


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------


class PositionEncoding(nn.Module):
    """(…, 2) coordinates in [0, 1] -> (…, D).

    sincos: fixed sin/cos of D/4 geometric frequencies (1 … 256 cycles per domain) per axis
    (UPT / NeRF style). learned: a 2-layer MLP of the coordinates, trained with the model.
    """

    def __init__(self, dim: int, kind: str):
        super().__init__()
        self.kind = kind
        if kind == "sincos":
            freqs = 2 * math.pi * torch.logspace(0, math.log10(256), dim // 4)
            self.register_buffer("freqs", freqs, persistent=False)
        else:
            self.mlp = MLP(2, dim, dim)

    def forward(self, pos01: torch.Tensor) -> torch.Tensor:
        if self.kind == "learned":
            return self.mlp(pos01)
        ang = pos01[..., None] * self.freqs  # (..., 2, D/4)
        return torch.cat([ang.sin(), ang.cos()], dim=-1).flatten(-2)  # (..., D)


class Encoder(nn.Module):
    def __init__(self, cfg: SurrogateConfig):
        super().__init__()
        d = cfg.model_dim
        self.cfg = cfg
        if cfg.channel_separated:
            # one MLP per channel, summed: the embedding is additively separable in the channels
            self.embed = nn.ModuleList(MLP(1, d, d) for _ in range(cfg.in_channels))
        else:
            self.embed = MLP(cfg.in_channels, d, d)
        self.pos = PositionEncoding(d, cfg.pos_encoding)
        self.message = MLP(2 * d, d, d)  # message(h_point, h_supernode)
        self.super_block = CrossBlock(d, cfg.heads, cfg.norm)  # supernodes attend to each other
        self.queries = nn.Parameter(torch.randn(cfg.latent_tokens, d) * 0.02)
        self.pool = CrossBlock(d, cfg.heads, cfg.norm)  # perceiver pooling
        self.norm = make_norm(cfg.norm, d)

    def embed_values(self, values: torch.Tensor) -> torch.Tensor:
        if self.cfg.channel_separated:
            return sum(mlp(values[..., c : c + 1]) for c, mlp in enumerate(self.embed))
        return self.embed(values)

    def forward(self, pos01: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        b, n, _ = pos01.shape
        h = self.embed_values(values) + self.pos(pos01)  # (B, N, D)
        # supernodes: S input points spread evenly over the (random) point order -- deterministic
        s = min(self.cfg.supernodes, n)
        idx = torch.linspace(0, n - 1, s, device=pos01.device).round().long()  # (S,)
        h_s = h[:, idx]  # (B, S, D)
        k = min(SUPERNODE_NEIGHBOURS, n)
        dist = torch.cdist(pos01[:, idx], pos01)  # (B, S, N)
        nbr = dist.topk(k, dim=-1, largest=False).indices  # (B, S, K)
        h_nbr = torch.gather(h, 1, nbr.reshape(b, s * k, 1).expand(-1, -1, h.shape[-1]))
        h_nbr = h_nbr.reshape(b, s, k, -1)  # (B, S, K, D)
        msg = self.message(torch.cat([h_nbr, h_s[:, :, None].expand_as(h_nbr)], dim=-1))
        sup = msg.mean(dim=2)  # (B, S, D)
        sup = self.super_block(sup, sup)  # (B, S, D)
        z = self.pool(self.queries.expand(b, -1, -1), sup)  # (B, L, D)
        return self.norm(z)


class Approximator(nn.Module):
    def __init__(self, cfg: SurrogateConfig):
        super().__init__()
        d = cfg.model_dim
        self.cfg = cfg
        self.blocks = nn.ModuleList(
            WindowBlock(d, cfg.heads, cfg.window_size, shift=bool(i % 2), norm=cfg.norm)
            for i in range(cfg.depth)
        )
        # U-shape: block depth-1-i receives the output of block i (i < depth // 2), fused by a
        # linear map of the concatenation (U-ViT style).
        n_skip = cfg.depth // 2 if cfg.u_shape else 0
        self.skip_fuse = nn.ModuleList(nn.Linear(2 * d, d) for _ in range(n_skip))
        self.norm = make_norm(cfg.norm, d)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        depth = self.cfg.depth
        n_skip = len(self.skip_fuse)
        stack = []
        for i, block in enumerate(self.blocks):
            j = depth - 1 - i  # index of the block this one mirrors
            if n_skip and j < n_skip and j < i:
                z = self.skip_fuse[j](torch.cat([z, stack.pop()], dim=-1))
            z = block(z)  # (B, L, D)
            if i < n_skip:
                stack.append(z)
        return self.norm(z)


class Decoder(nn.Module):
    def __init__(self, cfg: SurrogateConfig):
        super().__init__()
        d = cfg.model_dim
        self.pos = PositionEncoding(d, cfg.pos_encoding)
        self.query = MLP(d, d, d)
        self.cross = CrossBlock(d, cfg.heads, cfg.norm)
        self.norm = make_norm(cfg.norm, d)
        self.head = nn.Linear(d, cfg.in_channels)
        # zero-initialised head: decode() starts as "no change", the model as persistence
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, z: torch.Tensor, pos01: torch.Tensor) -> torch.Tensor:
        q = self.query(self.pos(pos01))  # (B, Q, D)
        q = self.cross(q, z)  # (B, Q, D)
        return self.head(self.norm(q))  # (B, Q, C)


class Surrogate(nn.Module):
    def __init__(self, cfg: SurrogateConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.approximator = Approximator(cfg)
        self.decoder = Decoder(cfg)
        c = cfg.in_channels
        self.register_buffer("field_mean", torch.zeros(c))
        self.register_buffer("field_std", torch.ones(c))
        self.register_buffer("pos_lo", torch.zeros(2))
        self.register_buffer("pos_hi", torch.ones(2))

    # --- units ---------------------------------------------------------------------------------
    def set_statistics(self, mean, std, pos_lo, pos_hi) -> None:
        """Store dataset statistics (per-channel mean/std, domain corners) in the buffers."""
        with torch.no_grad():
            self.field_mean.copy_(torch.as_tensor(mean))
            self.field_std.copy_(torch.as_tensor(std))
            self.pos_lo.copy_(torch.as_tensor(pos_lo))
            self.pos_hi.copy_(torch.as_tensor(pos_hi))

    def normalize(self, values: torch.Tensor, dim: int = -1) -> torch.Tensor:
        shape = [1] * values.ndim
        shape[dim] = -1
        return (values - self.field_mean.view(shape)) / self.field_std.view(shape)

    def denormalize(self, values: torch.Tensor, dim: int = -1) -> torch.Tensor:
        shape = [1] * values.ndim
        shape[dim] = -1
        return values * self.field_std.view(shape) + self.field_mean.view(shape)

    def unit_positions(self, pos: torch.Tensor) -> torch.Tensor:
        return (pos - self.pos_lo) / (self.pos_hi - self.pos_lo)

    # --- the three stages ----------------------------------------------------------------------
    def encode(self, pos: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """(B, N, 2) physical positions, (B, N, C) normalised values -> (B, L, D) latent."""
        return self.encoder(self.unit_positions(pos), values)

    def approximate(self, z: torch.Tensor) -> torch.Tensor:
        """(B, L, D) latent at t -> (B, L, D) latent at t + 1."""
        return self.approximator(z)

    def decode(self, z: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """(B, L, D) latent, (B, Q, 2) physical query positions -> (B, Q, C) normalised values."""
        return self.decoder(z, self.unit_positions(pos))

    def anchor(self, pos: torch.Tensor, values: torch.Tensor, query: torch.Tensor,
               solid: torch.Tensor | None = None) -> torch.Tensor:
        """Initial state at the query positions: (B, N, 2), (B, N, C), (B, Q, 2) -> (B, Q, C).

        Inverse-squared-distance weights over the ANCHOR_NEIGHBOURS nearest input points; a
        query on an input point gets that point's value (up to 1e-12 relative). ``solid``
        (B, Q) bool marks queries inside obstacles: they get the wall state the data stores
        there (all channels 0, normalised), not the interpolated neighbouring flow.
        """
        k = min(ANCHOR_NEIGHBOURS, pos.shape[1])
        p, out = self.unit_positions(pos), []
        for q in self.unit_positions(query).split(ANCHOR_CHUNK, dim=1):
            d2 = torch.cdist(q, p).pow(2)  # (B, q, N)
            d2, idx = d2.topk(k, dim=-1, largest=False)  # (B, q, k)
            w = 1.0 / (d2 + 1e-12)
            w = w / w.sum(dim=-1, keepdim=True)
            neigh = torch.gather(values.unsqueeze(1).expand(-1, q.shape[1], -1, -1), 2,
                                 idx.unsqueeze(-1).expand(-1, -1, -1, values.shape[-1]))
            out.append((w.unsqueeze(-1) * neigh).sum(dim=2))  # (B, q, C)
        base = torch.cat(out, dim=1)
        if solid is not None:
            wall = self.normalize(torch.zeros(values.shape[-1], dtype=base.dtype, device=base.device))
            base = torch.where(solid.unsqueeze(-1), wall, base)
        return base

    def predict(self, z: torch.Tensor, anchor: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Anchored prediction: (B, L, D) latent, (B, Q, C) anchor, (B, Q, 2) -> (B, Q, C)."""
        return anchor + self.decode(z, pos)

    def rollout(self, pos: torch.Tensor, values: torch.Tensor, horizon: int,
                query: torch.Tensor) -> torch.Tensor:
        """Latent rollout: encode once, approximate ``horizon`` times, decode every step.

        Returns (B, horizon, Q, C) normalised predictions at the query positions.
        """
        z = self.encode(pos, values)
        base = self.anchor(pos, values, query)
        out = []
        for _ in range(horizon):
            z = self.approximate(z)
            out.append(self.predict(z, base, query))
        return torch.stack(out, dim=1)

    def forward(self, pos, values, query):
        """One step: (B, N, 2), (B, N, C), (B, Q, 2) -> (B, Q, C)."""
        z = self.approximate(self.encode(pos, values))
        return self.predict(z, self.anchor(pos, values, query), query)

    # --- bottom layers (horizon curriculum) ----------------------------------------------------
    def bottom_parameters(self) -> list[nn.Parameter]:
        """Encoder + the first depth // 2 approximator blocks: frozen by the curriculum."""
        params = list(self.encoder.parameters())
        for block in self.approximator.blocks[: self.cfg.depth // 2]:
            params += list(block.parameters())
        return params


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------------------

PRESETS: dict[str, dict[str, Any]] = {
    # small enough to train a few hundred steps on 2 CPU cores in minutes
    "demo": dict(model_dim=64, depth=4, heads=4, latent_tokens=32, window_size=8, supernodes=64),
    # the playbook's nominal sizes (one GPU)
    "full": dict(model_dim=384, depth=24, heads=6, latent_tokens=512, window_size=12,
                 supernodes=1024),
}


def preset_model_config(name: str, **overrides: Any) -> SurrogateConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    return SurrogateConfig(**{**PRESETS[name], **overrides})


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """torch.save a dict of plain containers / tensors atomically (tmp file + rename)."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def config_dict(cfg: SurrogateConfig) -> dict[str, Any]:
    return to_dict(cfg)


def load_model(path: str | os.PathLike[str], ckpt: dict | None = None
               ) -> tuple[Surrogate, dict[str, Any]]:
    """Rebuild the surrogate from a trainer checkpoint (EMA weights); returns (model, spec)."""
    ckpt = load_checkpoint(path) if ckpt is None else ckpt
    cfg = from_dict(SurrogateConfig, ckpt["model_config"], where=f"checkpoint {path}")
    model = Surrogate(cfg)
    model.load_state_dict(ckpt["ema"]["surrogate"])
    model.eval()
    return model, ckpt.get("spec", {})
