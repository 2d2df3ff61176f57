"""UPT-style neural surrogate: point-set encoder -> latent approximator -> query decoder.

Read top to bottom: building blocks, then the config, then the model, then checkpoint
helpers. Sizes come from the presets (config/presets/; ``physweep.plan.spec.preset_model`` gives
a preset's baseline config). Reference: Universal Physics Transformers (Alkin et al., NeurIPS
2024, arXiv 2402.12365).

Data flow (B batch, N input points, S supernodes, L latent tokens, Q query points, D model dim):

    positions (B, N, 2) physical coords, values (B, N, C) normalised fields
      -> per-point value embedding (normalised)             (B, N, D)
      -> supernode pooling: every supernode averages messages
         from its K nearest input points (relative offsets) (B, S, D)
      -> perceiver pooling with L queries anchored on a
         coarse grid (locality prior on the attention)      (B, L, D)   = z_t       (encode)
      -> depth windowed-attention blocks (U-shape skips)    (B, L, D)   = z_{t+1}   (approximate)
      -> perceiver cross-attention from the queries         (B, Q, C)               (decode)

Latent rollout: encode once, apply ``approximate`` repeatedly, decode only where needed.

Two decoder heads share the cross-attention trunk (``Decoder``): ``decode`` reads the absolute
state from the latent alone (``decode(encode(x)) ≈ x`` is what ``inverse_decode`` trains), and
``decode_change`` reads the change since the start state from the latent *and* the start state
around each query (``query_context``: a two-layer point network over the nearest input points,
plus the query's position).
A prediction is ``anchor + decode_change(z_s, query, context)``, the anchor being the start
state at the queries: the stored grid state in training and evaluation, else carried from the
input points by inverse-distance k-NN interpolation (``ANCHOR_NEIGHBOURS`` points; exact on
input points). Residual branches start closed (zero-initialised), so an untrained model starts
close to persistence. Everything reads only the input point set, so the model stays
discretization-agnostic.

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

from physweep.configs import from_dict
from physweep.io import atomic_path

# Number of input points that send a message to each supernode (UPT uses a radius graph; a kNN
# graph has a fixed degree, so the cost is the same for every discretisation).
SUPERNODE_NEIGHBOURS = 8

# Input points around a query that the decoder's start context convolves (3×3 and a bit on a
# dense grid).
CONTEXT_NEIGHBOURS = 12

# Input points each input point gathers in the decoder's first point-convolution layer.
POINT_NEIGHBOURS = 12

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


def zero_init_(layer: nn.Linear) -> None:
    """Zero a residual branch's output layer: the block starts as the identity (its input still
    reaches the layer, so the layer's own gradient is not zero and the branch opens in the first
    updates). Keeps input-independent biases from swamping the signal at initialisation."""
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)


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

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """``bias`` (..., n, m): added to the attention logits (the locality prior)."""
        context = x if context is None else context
        *lead, n, d = x.shape
        m = context.shape[-2]
        h = self.heads
        q = self.q(x).reshape(*lead, n, h, d // h).transpose(-2, -3)  # (..., h, n, d/h)
        k, v = self.kv(context).reshape(*lead, m, 2, h, d // h).unbind(-3)
        k, v = k.transpose(-2, -3), v.transpose(-2, -3)  # (..., h, m, d/h)
        if bias is not None:
            bias = bias.unsqueeze(-3).to(q.dtype)  # (..., 1, n, m): the same for every head
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (..., h, n, d/h)
        return self.out(y.transpose(-2, -3).reshape(*lead, n, d))


class CrossBlock(nn.Module):
    """Perceiver block: queries attend to a context, then an MLP (pre-norm, residual)."""

    def __init__(self, dim: int, heads: int, norm: str, keep_query: bool = True):
        super().__init__()
        # keep_query False: the output is the attention read-out (+ MLP) without the query
        # itself, so it is made of the context only (the encoder's pooling: a token must not
        # be dominated by its input-independent query)
        self.keep_query = keep_query
        self.norm_q = make_norm(norm, dim)
        self.norm_ctx = make_norm(norm, dim)
        self.attn = Attention(dim, heads)
        self.norm_mlp = make_norm(norm, dim)
        self.mlp = MLP(dim, 4 * dim, dim)
        zero_init_(self.mlp.fc2)
        if keep_query:  # the attention is a residual branch only when the query is kept
            zero_init_(self.attn.out)

    def forward(self, q: torch.Tensor, ctx: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        read = self.attn(self.norm_q(q), self.norm_ctx(ctx), bias)
        q = q + read if self.keep_query else read
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
        zero_init_(self.attn.out)  # residual branches start closed: the block is the identity
        zero_init_(self.mlp.fc2)

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
    """Effective sizes of one surrogate. A field a knob sets defaults to the demo preset's
    effective value of the knob's default (tests/plan/test_knob_registry.py)."""

    in_channels: int = 3  # fields per point (u, v, p)
    model_dim: int = 48  # token width D
    depth: int = 3  # approximator blocks
    heads: int = 4  # attention heads (must divide model_dim)
    latent_tokens: int = 64  # L: the UPT information bottleneck
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


def token_layout(n_tokens: int, aspect: float) -> tuple[int, int]:
    """(rows, cols) of the latent tokens' anchor grid for a domain ``aspect`` = width / height.

    rows · cols >= n_tokens with cols / rows close to the aspect; the last column may be short.
    """
    rows = max(1, min(n_tokens, round(math.sqrt(n_tokens / max(aspect, 1e-6)))))
    return rows, math.ceil(n_tokens / rows)


def token_anchors(n_tokens: int, aspect: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor positions of the latent tokens in unit coordinates and their grid spacing.

    Returns (L, 2) anchors -- cell centres of a rows × cols grid over [0, 1]², column by column
    (token i and i + 1 are neighbours, so the approximator's 1-D windows are spatially local) --
    and the (2,) spacing (1/cols, 1/rows) that the locality prior is measured in.
    """
    rows, cols = token_layout(n_tokens, aspect)
    k = torch.arange(n_tokens, device=device)
    x = (k // rows + 0.5) / cols
    y = (k % rows + 0.5) / rows
    spacing = torch.tensor([1.0 / cols, 1.0 / rows], device=device)
    return torch.stack([x, y], dim=-1), spacing


def locality_bias(a: torch.Tensor, b: torch.Tensor, spacing: torch.Tensor) -> torch.Tensor:
    """Attention-logit prior −½·|Δ / spacing|² between (…, n, 2) and (…, m, 2) -> (…, n, m).

    A context point one token spacing away gets e^−½ of the weight of a coincident one, three
    spacings away e^−4.5: each latent token starts as a local summary of the field around its
    anchor (and each query reads the tokens around it), so the latent depends on the input from
    initialisation on; content attention can still reach further.
    """
    d = (a.unsqueeze(-2) - b.unsqueeze(-3)) / spacing  # (…, n, m, 2)
    return -0.5 * d.pow(2).sum(-1)


class Encoder(nn.Module):
    """Point set -> L latent tokens.

    Why the tokens are anchored (docs/architecture.md, "What was wrong before"): with
    free learned queries at 0.02 scale the perceiver pooling attended almost uniformly, every
    token became the same global average of the supernodes, and training drove the latent's
    dependence on the input to zero (its across-state variance share fell from 0.017 to 4.5e-8).
    Here query i is a learned vector plus an embedding of its anchor position, and its attention
    to the supernodes carries the locality prior: token i summarises the flow around anchor i.
    """

    def __init__(self, cfg: SurrogateConfig):
        super().__init__()
        d = cfg.model_dim
        self.cfg = cfg
        if cfg.channel_separated:
            # one MLP per channel, summed: the embedding is additively separable in the channels
            self.embed = nn.ModuleList(MLP(1, d, d) for _ in range(cfg.in_channels))
        else:
            self.embed = MLP(cfg.in_channels, d, d)
        self.norm_points = make_norm(cfg.norm, d)  # O(1) point features (see forward)
        self.pos = PositionEncoding(d, cfg.pos_encoding)
        self.message = MLP(2 * d + 2, d, d)  # message(h_point, h_supernode, relative position)
        self.super_block = CrossBlock(d, cfg.heads, cfg.norm)  # supernodes attend to each other
        self.queries = nn.Parameter(torch.randn(cfg.latent_tokens, d) * 0.02)
        self.query_pos = MLP(d, d, d)  # anchor position -> query offset
        # perceiver pooling with the locality prior; tokens are the read-out, not query + read-out
        self.pool = CrossBlock(d, cfg.heads, cfg.norm, keep_query=False)
        self.norm = make_norm(cfg.norm, d)

    def embed_values(self, values: torch.Tensor) -> torch.Tensor:
        if self.cfg.channel_separated:
            return sum(mlp(values[..., c : c + 1]) for c, mlp in enumerate(self.embed))
        return self.embed(values)

    def forward(self, pos01: torch.Tensor, values: torch.Tensor, anchors: torch.Tensor,
                spacing: torch.Tensor) -> torch.Tensor:
        b, n, _ = pos01.shape
        # point features carry the values only; where a point is enters the messages as its
        # offset from the supernode and the pooling as the locality prior. (An absolute position
        # encoding added here outweighed the values: 98 % of the latent's variance was the same
        # for every input state at initialisation.) They are normalised to O(1): at default
        # initialisation the embedding's output (std ~0.2) was drowned by the biases of the
        # message MLP, leaving 1 % of the latent's variance input-dependent instead of ~8 %.
        h = self.norm_points(self.embed_values(values))  # (B, N, D)
        # supernodes: S input points spread evenly over the (random) point order -- deterministic
        s = min(self.cfg.supernodes, n)
        idx = torch.linspace(0, n - 1, s, device=pos01.device).round().long()  # (S,)
        h_s = h[:, idx]  # (B, S, D)
        k = min(SUPERNODE_NEIGHBOURS, n)
        dist = torch.cdist(pos01[:, idx], pos01)  # (B, S, N)
        nbr = dist.topk(k, dim=-1, largest=False).indices  # (B, S, K)
        h_nbr = torch.gather(h, 1, nbr.reshape(b, s * k, 1).expand(-1, -1, h.shape[-1]))
        h_nbr = h_nbr.reshape(b, s, k, -1)  # (B, S, K, D)
        rel = (torch.gather(pos01, 1, nbr.reshape(b, s * k, 1).expand(-1, -1, 2)).reshape(b, s, k, 2)
               - pos01[:, idx, None]) / spacing  # (B, S, K, 2) in token spacings
        msg = self.message(torch.cat([h_nbr, h_s[:, :, None].expand_as(h_nbr), rel], dim=-1))
        sup = msg.mean(dim=2)  # (B, S, D)
        sup = self.super_block(sup, sup)  # (B, S, D)
        q = self.queries + self.query_pos(self.pos(anchors))  # (L, D)
        bias = locality_bias(anchors, pos01[:, idx], spacing)  # (B, L, S)
        z = self.pool(q.expand(b, -1, -1), sup, bias)  # (B, L, D)
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
    """Latent + query positions -> fields at the queries, by perceiver cross-attention.

    Queries read the latent tokens around them (the encoder's locality prior). Two heads share
    that trunk:
    * ``change``: the change since the start state, from the latent *and* the query's start
      neighbourhood (``context``) -- the prediction path;
    * ``state``: the absolute state from the latent alone -- the inverse losses' path
      ("the decoder inverts the encoder"), which only an encoder that carries the state can
      satisfy.
    The change head starts small (0.1 × PyTorch's default), not at zero: a zero head passed no
    gradient to anything below it when training started.
    """

    def __init__(self, cfg: SurrogateConfig):
        super().__init__()
        d = cfg.model_dim
        self.pos = PositionEncoding(d, cfg.pos_encoding)
        self.query = MLP(d, d, d)
        # the start state's neighbourhood of a query: continuous convolutions, kernel(offset) ⊙
        # value(point) (PointConv / SchNet-style filters) -- one layer among the input points
        # (each gathers its POINT_NEIGHBOURS nearest), then one at the queries
        self.point_kernel = MLP(2, d // 2, d)
        self.point_value = nn.Linear(d + cfg.in_channels, d)
        self.point_mlp = MLP(d, 2 * d, d)
        self.point_norm = make_norm(cfg.norm, d)
        self.context_kernel = MLP(2, d // 2, d)
        # value of a neighbour: the encoder's point embedding *before* its norm, and the raw
        # normalised fields (the norm divides out the amplitude the change depends on)
        self.context_value = nn.Linear(d + cfg.in_channels, d)
        self.context_mlp = MLP(d, 2 * d, d)
        self.context_norm = make_norm(cfg.norm, d)
        self.cross = CrossBlock(d, cfg.heads, cfg.norm)
        self.norm = make_norm(cfg.norm, d)
        self.change_head = nn.Linear(d, cfg.in_channels)
        self.state_head = nn.Linear(d, cfg.in_channels)
        with torch.no_grad():
            self.change_head.weight.mul_(0.1)
            self.change_head.bias.zero_()

    def forward(self, z: torch.Tensor, pos01: torch.Tensor, anchors: torch.Tensor,
                spacing: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``context`` (B, Q, D) given: the change since the start state; None: the state."""
        # the change path's query is the context (which holds the query's position embedding
        # too, ``Surrogate.query_context``); the state path's is the position embedding
        q = context if context is not None else self.query(self.pos(pos01))  # (B, Q, D)
        q = self.norm(self.cross(q, z, locality_bias(pos01, anchors, spacing)))  # (B, Q, D)
        return self.change_head(q) if context is not None else self.state_head(q)  # (B, Q, C)


def point_conv(v: torch.Tensor, p: torch.Tensor, q: torch.Tensor, spacing: torch.Tensor,
               kernel: nn.Module, k: int) -> torch.Tensor:
    """Continuous convolution: for each of the (B, Q, 2) positions ``q``, the mean over its k
    nearest (B, N, 2) points ``p`` of kernel(offset / spacing) ⊙ v(point); v (B, N, D) ->
    (B, Q, D)."""
    b, n, d = v.shape
    k = min(k, n)
    nbr = torch.cdist(q, p).topk(k, dim=-1, largest=False).indices  # (B, Q, K)
    flat = nbr.reshape(b, -1, 1)
    v_n = torch.gather(v, 1, flat.expand(-1, -1, d)).reshape(b, q.shape[1], k, d)
    rel = (torch.gather(p, 1, flat.expand(-1, -1, 2)).reshape(b, q.shape[1], k, 2)
           - q[:, :, None]) / spacing  # (B, Q, K, 2)
    return (kernel(rel) * v_n).mean(dim=2)


class FieldUnits(nn.Module):
    """Dataset statistics in buffers (travel in the state dict): per-channel field mean/std and
    the domain corners; shared by the surrogate and the reference U-Net."""

    def register_units(self, channels: int) -> None:
        self.register_buffer("field_mean", torch.zeros(channels))
        self.register_buffer("field_std", torch.ones(channels))
        self.register_buffer("pos_lo", torch.zeros(2))
        self.register_buffer("pos_hi", torch.ones(2))

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


class Surrogate(FieldUnits):
    def __init__(self, cfg: SurrogateConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.approximator = Approximator(cfg)
        self.decoder = Decoder(cfg)
        self.register_units(cfg.in_channels)

    # --- units ---------------------------------------------------------------------------------
    def unit_positions(self, pos: torch.Tensor) -> torch.Tensor:
        return (pos - self.pos_lo) / (self.pos_hi - self.pos_lo)

    # --- the three stages ----------------------------------------------------------------------
    def token_anchors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(L, 2) latent-token anchors in unit coordinates and their (2,) grid spacing."""
        ext = self.pos_hi - self.pos_lo
        aspect = float(ext[0] / ext[1]) if float(ext[1]) > 0 else 1.0
        return token_anchors(self.cfg.latent_tokens, aspect, self.pos_hi.device)

    def encode(self, pos: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """(B, N, 2) physical positions, (B, N, C) normalised values -> (B, L, D) latent."""
        return self.encoder(self.unit_positions(pos), values, *self.token_anchors())

    def approximate(self, z: torch.Tensor) -> torch.Tensor:
        """(B, L, D) latent at t -> (B, L, D) latent at t + 1."""
        return self.approximator(z)

    def decode(self, z: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """(B, L, D) latent, (B, Q, 2) physical query positions -> (B, Q, C) normalised state.

        From the latent alone: ``decode(encode(x)) ≈ x`` is what ``inverse_decode`` trains."""
        return self.decoder(z, self.unit_positions(pos), *self.token_anchors())

    def decode_change(self, z: torch.Tensor, pos: torch.Tensor, context: torch.Tensor
                      ) -> torch.Tensor:
        """(B, L, D) latent at lead s, (B, Q, 2) queries, (B, Q, D) ``query_context`` of the
        start state -> (B, Q, C) normalised change since the start state."""
        return self.decoder(z, self.unit_positions(pos), *self.token_anchors(), context)

    def query_context(self, pos: torch.Tensor, values: torch.Tensor, query: torch.Tensor
                      ) -> torch.Tensor:
        """The start state around each query: (B, N, 2), (B, N, C), (B, Q, 2) -> (B, Q, D).

        A two-layer point network: each input point first gathers its POINT_NEIGHBOURS nearest
        input points (a residual continuous-convolution layer), then each query the
        CONTEXT_NEIGHBOURS nearest: the mean of kernel(offset) ⊙ W·[h, x](point), with h the
        point features (the encoder's point embedding before its norm, after layer 1), x the
        point's normalised fields and the offset in token spacings, then an MLP; plus the
        decoder's embedding of the query position (the change depends on where a query is
        relative to the obstacle and the wake). It gives the decoder
        the start state at the input's resolution, so the latent carries the dynamics rather
        than every detail of the field; it needs only the input point set and the query
        positions (discretisation-agnostic).
        """
        enc, dec = self.encoder, self.decoder
        p = self.unit_positions(pos)
        _, spacing = self.token_anchors()
        h = enc.embed_values(values)  # (B, N, D)
        # layer 1, among the input points: h += MLP(norm(mean_k kernel(offset) ⊙ W·[h, x]))
        c = point_conv(dec.point_value(torch.cat([h, values], dim=-1)), p, p, spacing,
                       dec.point_kernel, POINT_NEIGHBOURS)
        h = h + dec.point_mlp(dec.point_norm(c))
        # layer 2, at the queries: W·[h, x] once per input point, gathered per (query, neighbour)
        v = dec.context_value(torch.cat([h, values], dim=-1))  # (B, N, D)
        out = []
        for q in self.unit_positions(query).split(ANCHOR_CHUNK, dim=1):
            c = point_conv(v, p, q, spacing, dec.context_kernel, CONTEXT_NEIGHBOURS)  # (B, q, D)
            # + where the query is (relative to the obstacle and the wake): computed once per
            # start, not per lead
            out.append(c + dec.context_mlp(dec.context_norm(c)) + dec.query(dec.pos(q)))
        return torch.cat(out, dim=1)

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

    def predict(self, z: torch.Tensor, anchor: torch.Tensor, pos: torch.Tensor,
                context: torch.Tensor) -> torch.Tensor:
        """Anchored prediction ``anchor + decode_change(z, pos, context)`` -> (B, Q, C).

        z (B, L, D) latent at lead s; anchor (B, Q, C) the state at t0 at the queries; context
        (B, Q, D) = ``query_context`` of the start state.
        """
        return anchor + self.decode_change(z, pos, context)

    def start(self, pos: torch.Tensor, values: torch.Tensor, query: torch.Tensor,
              anchor: torch.Tensor | None = None, solid: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Everything a rollout needs from its start state: (z_0, anchor, context).

        ``anchor`` defaults to the interpolated input (``anchor(..., solid)``); the evaluation
        passes the stored grid state, as the trainer anchors on it (``Trainer.compute_loss``)."""
        z0 = self.encode(pos, values)
        if anchor is None:
            anchor = self.anchor(pos, values, query, solid)
        return z0, anchor, self.query_context(pos, values, query)

    def rollout(self, pos: torch.Tensor, values: torch.Tensor, horizon: int,
                query: torch.Tensor) -> torch.Tensor:
        """Latent rollout: encode once, approximate ``horizon`` times, decode every step.

        Returns (B, horizon, Q, C) normalised predictions at the query positions.
        """
        z, anchor, context = self.start(pos, values, query)
        out = []
        for _ in range(horizon):
            z = self.approximate(z)
            out.append(self.predict(z, anchor, query, context))
        return torch.stack(out, dim=1)

    def forward(self, pos, values, query):
        """One step: (B, N, 2), (B, N, C), (B, Q, 2) -> (B, Q, C)."""
        return self.rollout(pos, values, 1, query)[:, 0]

    # --- bottom layers (horizon curriculum) ----------------------------------------------------
    def bottom_parameters(self) -> list[nn.Parameter]:
        """The first depth // 2 approximator blocks: frozen by the curriculum on expansion.

        The encoder and decoder are *not* frozen: they define the latent space the inverse
        losses and the reconstruction keep training; freezing the encoder after the first,
        short curriculum stage locked in an immature (before the fix: input-independent) latent.
        """
        params = []
        for block in self.approximator.blocks[: self.cfg.depth // 2]:
            params += list(block.parameters())
        return params


def latent_input_share(z: torch.Tensor) -> float:
    """Share of a latent batch's variance that depends on the input state.

    z (B, L, D) latents of B different states: the variance across the batch (per token and
    feature, then averaged) divided by the variance of all elements together. 0 = every state
    gives the same latent (a collapsed encoder); differences between tokens or features that
    are the same for every state count as input-independent.
    """
    z = z.detach().double()
    total = z.var(unbiased=False)
    return float(z.var(dim=0, unbiased=False).mean() / total) if float(total) > 0 else 0.0


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """torch.save a dict of plain containers / tensors atomically (tmp file + rename)."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def load_model(path: str | os.PathLike[str], ckpt: dict | None = None
               ) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the trained model from a trainer checkpoint (EMA weights); returns (model, spec).

    The model is a :class:`Surrogate`, or the reference :class:`~physweep.model.unet.UNet` when
    the checkpoint's ``model_kind`` is "unet".
    """
    ckpt = load_checkpoint(path) if ckpt is None else ckpt
    if ckpt.get("model_kind", "upt") == "unet":
        from physweep.model.unet import UNet, UNetConfig

        model: nn.Module = UNet(from_dict(UNetConfig, ckpt["model_config"],
                                          where=f"checkpoint {path}"))
    else:
        model = Surrogate(from_dict(SurrogateConfig, ckpt["model_config"],
                                    where=f"checkpoint {path}"))
    model.load_state_dict(ckpt["ema"]["surrogate"])
    model.eval()
    return model, ckpt.get("spec", {})
