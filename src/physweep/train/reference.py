"""The reference model's run spec: a conv U-Net (``model/unet.py``) trained once per dataset.

Every evaluation stores the reference's nRMSE on the same samples (``evaluate.suite``), so a run's
score is always read next to a plain model trained by the same trainer on the same data. Its
settings are the preset's ``reference`` section; they are not knobs and no round sweeps them.
What differs from a surrogate run, and why:
* no latent, so no inverse losses and no corrector (their weights and steps are 0);
* ``projection_weight`` 0: the reference is a plain data-driven model;
* regime sampler temperature 1e6: uniform over the regimes (the reference must not depend on
  a knob the rounds tune);
* one curriculum stage at ``max_horizon`` (a 2-step unrolled loss, as in the U-Net
  baseline of issue #11).
"""

from __future__ import annotations

from typing import Any

from physweep.configs import to_dict
from physweep.model.corrector import CorrectorConfig
from physweep.model.unet import UNetConfig
from physweep.train.loop import TrainConfig

#: regime-sampler temperature of the reference: large enough that the draw is uniform
UNIFORM_TEMPERATURE = 1e6


def reference_spec(reference: dict[str, Any], train_preset: dict[str, Any],
                   dataset: str) -> dict[str, Any]:
    """Run spec of the reference U-Net from the preset's ``reference`` and ``train`` sections."""
    points = int(train_preset["points_per_sample"])
    batch = int(reference["samples_per_step"]) * points
    train = TrainConfig(
        lr=float(reference["lr"]), warmup=float(reference.get("warmup", 0.05)),
        ema=float(reference.get("ema", 0.99)), inverse_encode=0.0, inverse_decode=0.0,
        projection_weight=0.0, max_horizon=int(reference["max_horizon"]),
        freeze_bottom_layers_on_expand=False, sampler_temp=UNIFORM_TEMPERATURE,
        curriculum_stages=int(reference.get("curriculum_stages", 1)), batch_tokens=batch,
        points_per_sample=points, micro_batch=int(train_preset["micro_batch"]),
        budget_tokens=int(reference["steps"]) * batch,
        weight_decay=float(reference["weight_decay"]),
        grad_clip=float(train_preset["grad_clip"]), seed=int(reference.get("seed", 0)),
        device=str(train_preset["device"]), precision=str(train_preset["precision"]),
        compile=bool(train_preset["compile"]), log_every=int(train_preset["log_every"]))
    model = UNetConfig(width=int(reference["width"]), levels=int(reference["levels"]))
    return {"run": f"reference_{dataset}", "round": "reference", "seed": train.seed,
            "model_kind": "unet", "model": to_dict(model),
            "corrector": to_dict(CorrectorConfig(steps=0)), "train": to_dict(train),
            "nominal": {}}
