"""Learning-rate schedule: a pure function of the step (nanoGPT ``get_lr`` style)."""

from __future__ import annotations

import math


def lr_at(step: int, total_steps: int, base_lr: float, warmup_fraction: float,
          min_ratio: float = 0.1) -> float:
    """LR used for optimizer step ``step`` (0-based) of ``total_steps``.

    Phase 1 -- linear warmup over the first w = max(1, round(warmup_fraction · total)) steps:
        lr = base_lr · (step + 1) / w                    (reaches base_lr at step w - 1)
    Phase 2 -- cosine decay from base_lr to min_ratio · base_lr over the remaining steps:
        lr = min + ½(base - min)(1 + cos(π · progress)),  progress in [0, 1]
    Past the end (step >= total_steps) the LR stays at min_ratio · base_lr.
    """
    if total_steps < 1:
        raise ValueError("total_steps must be >= 1")
    warmup = max(1, round(warmup_fraction * total_steps)) if warmup_fraction > 0 else 0
    min_lr = min_ratio * base_lr
    if step < warmup:
        return base_lr * (step + 1) / warmup
    if step >= total_steps:
        return min_lr
    decay_steps = max(1, total_steps - warmup - 1)
    progress = min(1.0, (step - warmup) / decay_steps)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def scale_lr(lr: float, batch_tokens: int, ref_batch_tokens: int) -> float:
    """Linear scaling rule: the LR grows in proportion to the batch size in tokens."""
    if batch_tokens < 1 or ref_batch_tokens < 1:
        raise ValueError("batch sizes must be positive")
    return lr * batch_tokens / ref_batch_tokens
