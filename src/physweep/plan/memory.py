"""Predicted peak training memory of one run, before it runs (``physweep plan``, the run spec).

:func:`training_memory` counts, in bytes, what is alive at the peak of one training step of the
UPT surrogate (``physweep.train.loop.Trainer``) -- the point where the forward pass of a
micro-batch has built its whole autograd graph and the backward pass starts:

* **static**: parameters, the AdamW state (two moments), the EMA copy (parameters and buffers),
  the gradients of the parameters trainable in the curriculum's last stage (the bottom
  approximator blocks are frozen there when ``freeze_bottom_layers_on_expand``), and under bf16
  autocast the bf16 copies of the weights that the graph keeps (one per call for frozen
  layers, whose copies autocast does not cache);
* **inputs**: one micro-batch as ``Trainer.draw_batch`` puts it on the device (input points,
  the grid targets of every lead, the start state on the grid);
* **activations**: the tensors autograd saves for the backward pass, counted layer by layer from
  the code in ``physweep.model.surrogate`` and ``Trainer.compute_loss`` -- one micro-batch of
  ``micro_batch`` samples at the run's largest horizon h. With Q = H·W grid cells, P input
  points, S supernodes, L latent tokens, D model_dim, the terms are

  - the rollout decoder: B·h·Q query-steps (every grid cell, every lead) × (16 D + L + heads):
    the cross-attention block's saved inputs, its 4 D MLP twice, and the locality-prior bias
    (B·h, Q, L); with the latent side B·h·L × 4 D. This is the dominant term at the full
    preset (B 2, h 32, Q 32,768: 2.1 M query-steps);
  - the decoder's start context: B·Q queries × 12 neighbours × (3 D + 4) (the continuous
    convolution's kernel MLP and gathered values) + B·Q × 7 D;
  - the approximator: B·h applications × depth blocks × L tokens × (16 D + heads·w) (window
    attention runs on PyTorch's math path: the 5-D windows with a padding mask are not taken
    by the fused kernels, so the attention probabilities are saved), plus the U-shape fusions;
  - the encoder (twice when ``inverse_encode`` > 0: the re-encoding of the lead-1 prediction):
    points × (C + 3 D), supernode messages B·S·8 × (4 D + 4), supernode self-attention and the
    perceiver pooling with its (B, L, S) bias;
  - the inverse losses' decodings at the P input points (state head: + 3 D per point for the
    position query MLP), the corrector's denoiser on the latent tokens, and the rollout loss
    and physics residual on the decoded grid fields (~12 values per query-step).

Precision: fp32 counts 4 bytes per element. bf16 autocast (CUDA) counts 2 bytes for what autocast
runs in bf16 (linear-layer inputs, attention, GELU) and 4 bytes for the inputs of LayerNorm /
RMSNorm, which autocast runs in fp32, and for the loss and physics terms. ``torch.compile`` is
predicted as eager: Inductor's fusion and recomputation usually save less, so the estimate is
an upper bound there (``benchmarks/gpu_check.py`` measures all three).

Tested against the measured peak on CPU (``tests/plan/test_memory.py``): a training step's peak
of live tensor bytes from the PyTorch profiler's allocation events
(:func:`physweep.train.telemetry.step_peak_bytes`) plus the static tensors, within 20 %.

:func:`fit_micro_batch` is the plan-time rule for a device that a run would not fit: the largest
micro-batch whose prediction fits ``MEMORY_HEADROOM`` of the device's memory; the rest of the
step's samples are gradient accumulation, so ``batch_tokens`` (and the optimisation) is
unchanged -- only the step is slower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# physweep.model.surrogate's SUPERNODE_NEIGHBOURS, POINT_NEIGHBOURS and CONTEXT_NEIGHBOURS,
# repeated here so the planner stays free of torch (a test checks they agree)
SUPERNODE_NEIGHBOURS = 8
POINT_NEIGHBOURS = 12
CONTEXT_NEIGHBOURS = 12
# physweep.train.loop.TrainConfig's default grid_samples (the same test checks it)
GRID_SAMPLES = 2
#: fraction of the device memory a run may plan to use (CUDA context, allocator fragmentation
#: and the caching allocator's rounding take the rest)
MEMORY_HEADROOM = 0.9
GIB = 2**30
CHANNELS = 3  # u, v, p


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted peak memory of one training step (bytes), by part."""

    total: int
    parts: dict[str, int] = field(default_factory=dict)
    micro_batch: int = 1
    horizon: int = 1
    precision: str = "fp32"
    parameters: int = 0

    @property
    def gib(self) -> float:
        return self.total / GIB

    def describe(self) -> str:
        """The parts above 1 % of the total, largest first (GiB, or MiB below 1 GiB)."""
        unit, scale = ("GiB", GIB) if self.total >= GIB else ("MiB", 2**20)
        big = sorted(self.parts.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{k} {v / scale:.2f}" for k, v in big if v >= 0.01 * self.total
                         ) + f" {unit}"


# ---------------------------------------------------------------------------- parameters
def _linear(a: int, b: int) -> int:
    return a * b + b


def _mlp(a: int, h: int, b: int) -> int:
    return _linear(a, h) + _linear(h, b)


def _norm(kind: str, d: int) -> int:
    return 2 * d if kind == "layernorm" else d


def _attention(d: int) -> int:
    return _linear(d, d) + _linear(d, 2 * d) + _linear(d, d)


def _cross_block(d: int, norm: str) -> int:
    return 3 * _norm(norm, d) + _attention(d) + _mlp(d, 4 * d, d)


def parameter_counts(model: dict[str, Any], corrector_steps: int) -> dict[str, int]:
    """Parameter counts of the surrogate and its denoiser (``physweep.model``), without
    building them: ``surrogate``, ``denoiser``, ``bottom`` (the approximator blocks the
    curriculum freezes) and ``buffers`` (elements)."""
    d, c, norm = model["model_dim"], model.get("in_channels", CHANNELS), model["norm"]
    pos = _mlp(2, d, d) if model["pos_encoding"] == "learned" else 0
    embed = c * _mlp(1, d, d) if model["channel_separated"] else _mlp(c, d, d)
    encoder = (embed + _norm(norm, d) + pos + _mlp(2 * d + 2, d, d) + _cross_block(d, norm)
               + model["latent_tokens"] * d + _mlp(d, d, d) + _cross_block(d, norm)
               + _norm(norm, d))
    block = 2 * _norm(norm, d) + _attention(d) + _mlp(d, 4 * d, d)
    n_skip = model["depth"] // 2 if model["u_shape"] else 0
    approximator = model["depth"] * block + n_skip * _linear(2 * d, d) + _norm(norm, d)
    decoder = (pos + _mlp(d, d, d) + _mlp(2, d // 2, d) + _linear(d + c, d) + _mlp(d, 2 * d, d)
               + _mlp(2, d // 2, d) + _linear(d + c, d) + _mlp(d, 2 * d, d) + _norm(norm, d)
               + _norm(norm, d) + _cross_block(d, norm) + _norm(norm, d) + 2 * _linear(d, c))
    denoiser = (_linear(2 * d, d) + (max(corrector_steps, 1) + 1) * d + _cross_block(d, norm)
                + _norm(norm, d) + _mlp(d, 2 * d, d))
    sincos = 0 if model["pos_encoding"] == "learned" else 2 * (d // 4)
    return {"surrogate": encoder + approximator + decoder, "denoiser": denoiser,
            "bottom": (model["depth"] // 2) * block, "buffers": 2 * c + 4 + sincos}


# ---------------------------------------------------------------------------- activations
class _Count:
    """Saved elements in two classes: ``hi`` stays fp32 under autocast (norm inputs, losses),
    ``lo`` is bf16 under autocast (linear inputs, attention, GELU); both 4 bytes in fp32."""

    def __init__(self) -> None:
        self.parts: dict[str, list[float]] = {}

    def add(self, part: str, hi: float = 0.0, lo: float = 0.0) -> None:
        cur = self.parts.setdefault(part, [0.0, 0.0])
        cur[0] += hi
        cur[1] += lo

    def bytes(self, lowp: bool) -> dict[str, int]:
        lo = 2 if lowp else 4
        return {k: int(4 * h + lo * v) for k, (h, v) in self.parts.items()}


def _cross_queries(n: float, d: int, heads: int, keys: int, bias: bool) -> tuple[float, float]:
    """Saved (hi, lo) elements per query of a CrossBlock that keeps its query: norm inputs q and
    q + read (hi); normed q, q projection, attention output, normed residual, the MLP's 4 D
    hidden twice, the (n, keys) bias (lo); the attention's log-sum-exp per head (hi)."""
    return n * (2 * d + heads), n * (12 * d + (keys if bias else 0))


def _activations(m: dict[str, Any], t: dict[str, Any], corrector_steps: int, b: int, h: int,
                 grid: tuple[int, int]) -> _Count:
    d, heads, lat = m["model_dim"], m["heads"], m["latent_tokens"]
    c = m.get("in_channels", CHANNELS)
    q = grid[0] * grid[1]
    p = t["points_per_sample"]
    s = min(m["supernodes"], p)
    ks, kc = min(SUPERNODE_NEIGHBOURS, p), min(CONTEXT_NEIGHBOURS, p)
    cnt = _Count()
    # RMSNorm is composed of elementwise ops in PyTorch: besides its input it saves its
    # normalised output (for the weight's gradient), one more D per normalised row
    rms = d if m["norm"] == "rmsnorm" else 0

    def encoder(part: str) -> None:
        cnt.add(part, hi=rms * b * (p + 3 * s + 3 * lat))
        # point embedding (C -> D -> D), normalised: inputs of fc1, GELU, fc2, the norm
        cnt.add(part, hi=b * p * d, lo=b * p * (c + 2 * d))
        # supernode messages over K neighbours: concat (2D + 2), GELU in/out, gather index
        cnt.add(part, lo=b * s * ks * (4 * d + 2), hi=b * s * ks * 2)
        # supernode self-attention (queries and context are the same supernodes)
        hi, lo = _cross_queries(b * s, d, heads, 0, False)
        cnt.add(part, hi=hi, lo=lo + b * s * 3 * d)
        # perceiver pooling: L queries on S supernodes with the (B, L, S) locality bias; the
        # tokens are the read-out (no query residual), then the encoder's final norm
        cnt.add(part, hi=b * lat * (2 * d + heads), lo=b * lat * (11 * d + s) + b * s * 3 * d)

    def decode_points(part: str, n_calls: int) -> None:
        # state head at the input points: position query MLP (3 D) + cross block + norm/head
        hi, lo = _cross_queries(b * p, d, heads, lat, True)
        hi += rms * b * (3 * p + lat)
        cnt.add(part, hi=n_calls * (hi + b * p * d), lo=n_calls * (lo + b * p * 4 * d
                                                                  + b * lat * 3 * d))

    encoder("encoder")
    # start context (query_context): point values once (embedding, norm, value map), then per
    # (query, neighbour) the kernel MLP (2 -> D/2 -> D) and the gathered values, then the
    # context MLP per query; the context itself stays alive for the rollout
    cnt.add("decoder context", hi=b * p * d, lo=b * p * 3 * d)
    # the first point-convolution layer among the input points: per (point, neighbour) the
    # kernel MLP and the gathered values, then the norm and MLP per point
    kp = min(POINT_NEIGHBOURS, p)
    cnt.add("decoder context", lo=b * p * kp * (3 * d + 2) + b * p * 5 * d,
            hi=b * p * kp * 2 + b * p * 2 * d)
    # the context's queries: every cell of every sample, or with query_points every cell of
    # the grid_samples samples and the sampled cells of the others (Trainer.compute_loss)
    qp = int(t.get("query_points", 0))
    sampled = 0 < qp < q
    g = min(int(t.get("grid_samples", GRID_SAMPLES)), b) if sampled else b
    nc = g * q + (b - g) * qp  # context queries
    cnt.add("decoder context", lo=nc * kc * (3 * d + 2), hi=nc * kc * 2)
    cnt.add("decoder context", hi=nc * 2 * d, lo=nc * 5 * d)
    # + the query position embedding (sin-cos or MLP, then the D -> D -> D query MLP)
    cnt.add("decoder context", lo=nc * 4 * d)
    cnt.add("decoder context", hi=rms * (b * p + nc))
    # approximator: h applications x depth window blocks on L tokens (padded to whole windows)
    w = min(m["window_size"], lat)
    lp = math.ceil(lat / w) * w
    per_block_hi = lat * 2 * d
    per_block_lo = lat * 9 * d + lp * (5 * d + heads * w)
    n_skip = m["depth"] // 2 if m["u_shape"] else 0
    cnt.add("approximator", hi=b * h * (m["depth"] * per_block_hi + lat * d),
            lo=b * h * (m["depth"] * per_block_lo + n_skip * lat * 2 * d))
    cnt.add("approximator", hi=b * lat * d)  # the last latent (z_h)
    cnt.add("approximator", hi=rms * b * h * lat * (2 * m["depth"] + 1))
    # rollout decoder: (B h, Q) queries on (B h, L) tokens -- the whole grid at every lead of
    # every sample, or with query_points of the grid_samples samples and that many cells at
    # every lead of the others
    ng = g * h * q  # decoded grid cells (the physics residual's)
    nq = ng + (b - g) * h * qp  # decoded queries of all leads
    hi, lo = _cross_queries(nq, d, heads, lat, True)
    cnt.add("decoder rollout", hi=hi + nq * d, lo=lo + nq * d + b * h * lat * 4 * d)
    cnt.add("decoder rollout", hi=rms * (3 * nq + b * h * lat))
    # rollout loss and physics residual on the decoded fields (fp32 in every precision)
    cnt.add("loss + physics", hi=ng * (2 * c + 6) + (nq - ng) * 2 * c)
    if t["inverse_decode"] > 0:
        decode_points("inverse losses", 1)
    if t["inverse_encode"] > 0:
        decode_points("inverse losses", 2)
        encoder("inverse losses")
    if corrector_steps > 0:
        # denoiser on the latent tokens: fusion (2 D), a self-attention block, norm, MLP head
        hi, lo = _cross_queries(b * lat, d, heads, 0, False)
        cnt.add("corrector", hi=hi + b * lat * 2 * d + rms * b * lat * 4, lo=lo + b * lat * 10 * d)
    return cnt


# ---------------------------------------------------------------------------- estimate
def training_memory(model: dict[str, Any], train: dict[str, Any], grid: tuple[int, int],
                    corrector_steps: int = 2, n_time: int | None = None,
                    micro_batch: int | None = None, device: str | None = None
                    ) -> MemoryEstimate:
    """Predicted peak memory (bytes) of one training step of a run.

    ``model`` / ``train``: the run spec's ``model`` and ``train`` sections (SurrogateConfig and
    TrainConfig fields); ``grid`` the data's (H, W); ``n_time`` the snapshots per trajectory
    (the horizon is clipped to n_time - 1 as the trainer does); ``micro_batch`` overrides the
    spec's; ``device`` "cpu" or "cuda" (default: cuda for a bf16 run, else cpu) -- bf16
    autocast only happens on cuda.
    """
    b = int(micro_batch or train["micro_batch"])
    b = min(b, max(1, train["batch_tokens"] // train["points_per_sample"]))
    h = int(train["max_horizon"])
    if n_time is not None:
        h = min(h, n_time - 1)
    if device is None:
        device = "cuda" if train.get("precision") == "bf16" else "cpu"
    lowp = train.get("precision") == "bf16" and device == "cuda"
    counts = parameter_counts(model, corrector_steps)
    n_par = counts["surrogate"] + counts["denoiser"]
    stages, first = int(train.get("curriculum_stages", 1)), 1
    frozen = (train.get("freeze_bottom_layers_on_expand", True) and stages > 1
              and h > first)
    trainable = n_par - (counts["bottom"] if frozen else 0)
    parts = {
        "parameters": 4 * n_par,
        "AdamW state": 8 * n_par,
        "EMA copy": 4 * (n_par + counts["buffers"]),
        "gradients": 4 * trainable,
    }
    if lowp:  # bf16 weight copies saved by the graph: cached once, per call when frozen
        parts["bf16 weights"] = 2 * trainable + (2 * counts["bottom"] * h if frozen else 0)
    q = grid[0] * grid[1]
    c = model.get("in_channels", CHANNELS)
    p = train["points_per_sample"]
    # draw_batch on the device: points (pos, vals, next), grid targets of h leads, start state
    parts["inputs"] = 4 * b * (p * (2 + 2 * c) + q * c * (h + 1) + 2 * q)
    parts.update(_activations(model, train, corrector_steps, b, h, grid).bytes(lowp))
    total = int(sum(parts.values()))
    return MemoryEstimate(total=total, parts=parts, micro_batch=b, horizon=h,
                          precision="bf16" if lowp else "fp32", parameters=n_par)


def fit_micro_batch(model: dict[str, Any], train: dict[str, Any], grid: tuple[int, int],
                    device_memory_gb: float, corrector_steps: int = 2,
                    n_time: int | None = None, device: str | None = None
                    ) -> tuple[MemoryEstimate, MemoryEstimate, bool]:
    """The largest micro-batch, at most the spec's, whose predicted peak fits
    ``MEMORY_HEADROOM`` x ``device_memory_gb`` GiB.

    Returns (estimate at the spec's micro-batch, estimate at the fitted one, fits). The memory is
    affine in the micro-batch (static + micro-batch x per-sample), so the fit is solved exactly;
    when not even one sample per micro-batch fits, the micro-batch-1 estimate comes back with
    fits False.
    """
    budget = MEMORY_HEADROOM * device_memory_gb * GIB
    nominal = training_memory(model, train, grid, corrector_steps, n_time, None, device)
    if nominal.total <= budget:
        return nominal, nominal, True
    one = training_memory(model, train, grid, corrector_steps, n_time, 1, device)
    per_sample = (nominal.total - one.total) / max(1, nominal.micro_batch - 1)
    b = 1 + int((budget - one.total) // per_sample) if per_sample > 0 and budget > one.total else 1
    fitted = training_memory(model, train, grid, corrector_steps, n_time,
                             max(1, min(b, nominal.micro_batch)), device)
    return nominal, fitted, fitted.total <= budget
