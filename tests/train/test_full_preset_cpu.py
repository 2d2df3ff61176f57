"""The full preset's model and data pipeline exercised on CPU (issue #16 part 3).

The run spec is the one the full preset's round A baseline trains with (``build_spec``: model
53.7 M parameters, 16,384 input points per sample, decoded on the 128 x 256 grid); the data a
synthetic split with the real FlowSplit structure at 128 x 256 (the generated dataset takes
GPU-hours). Reduced for 2 CPU cores, the model and every per-sample shape kept: one sample per
optimizer step (batch_tokens 16,384 instead of 65,536), fp32 eager instead of bf16 + compile,
and a training horizon of 2 instead of 32 -- the activations grow linearly with the horizon,
and 32 leads would need ~80 GiB in fp32 per sample pair (the plan predicts it).
"""

from __future__ import annotations

import copy
import time

import pytest
import torch

from physweep.model.surrogate import count_parameters, load_checkpoint
from physweep.physics.flowsplit import synthetic_split
from physweep.plan import memory as M
from physweep.train.loop import Trainer
from physweep.train.telemetry import measure_step_memory

HORIZON = 2


@pytest.fixture(scope="module")
def full_spec(repo_root):
    import yaml

    from physweep.plan.config import load_workflow_config
    from physweep.plan.round import plan_round
    from physweep.plan.spec import build_spec, preset_model, template

    config = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())
    config["preset"] = "full"
    wcfg = load_workflow_config(config, repo_root)
    plan = plan_round(wcfg, "round_a")
    spec = build_spec(template(wcfg, plan, plan.run("baseline")))
    assert spec["model"] == preset_model(wcfg)  # the preset's baseline model
    assert spec["memory"]["micro_batch"] == 2 and spec["memory"]["fits"]  # 48 GiB of 72
    cpu = copy.deepcopy(spec)
    cpu["train"].update(batch_tokens=spec["train"]["points_per_sample"], micro_batch=1,
                        max_horizon=HORIZON, curriculum_stages=1, precision="fp32",
                        compile=False, device="cpu", threads=torch.get_num_threads(),
                        budget_tokens=spec["train"]["points_per_sample"] * 100, log_every=1)
    return spec, cpu


@pytest.mark.slow
def test_full_preset_trains_checkpoints_and_resumes_on_cpu(full_spec, tmp_path):
    spec, cpu = full_spec
    t0 = time.perf_counter()
    split = synthetic_split(2, HORIZON + 4, 128, 256)
    trainer = Trainer(cpu, split)
    n_params = count_parameters(trainer.model) + count_parameters(trainer.denoiser)
    assert count_parameters(trainer.model) == 54_473_862
    assert n_params == sum(M.parameter_counts(spec["model"], spec["corrector"]["steps"])[k]
                           for k in ("surrogate", "denoiser"))
    # shapes of one sample as the full preset feeds it
    h = trainer.horizon()
    batch = trainer.draw_batch(trainer.sampler.sample(1, trainer.gen), h)
    assert h == HORIZON
    assert batch["pos"].shape == (1, 16384, 2) and batch["vals"].shape == (1, 16384, 3)
    assert batch["target"].shape == (1, HORIZON, 3, 128, 256)
    assert batch["state0"].shape == (1, 128 * 256, 3)
    with torch.no_grad():
        z0 = trainer.model.encode(batch["pos"], batch["vals"])
    assert z0.shape == (1, 512, 384)

    # optimizer step 1, then step 2 measured against the plan's prediction
    t1 = time.perf_counter()
    first = trainer.train_step()
    step_s = time.perf_counter() - t1
    meas = measure_step_memory(trainer)
    second = meas["row"]
    assert first["finite"] and second["finite"]
    pred = M.training_memory(cpu["model"], cpu["train"], (128, 256), cpu["corrector"]["steps"],
                             split.n_time)
    ratio = pred.total / meas["total"]
    assert abs(ratio - 1) < 0.2, (pred.describe(), meas)

    # checkpoint: weights, EMA and the two AdamW moments in fp32, and resume bit for bit
    ckpt = tmp_path / "checkpoint.pt"
    trainer.save(ckpt)
    size = ckpt.stat().st_size
    assert abs(size / (16 * n_params) - 1) < 0.05
    resumed = Trainer(cpu, split)
    resumed.load_state(load_checkpoint(ckpt))
    assert resumed.step == trainer.step == 2
    a, b = trainer.train_step(), resumed.train_step()
    assert a["loss"] == b["loss"] and a["grad_norm"] == b["grad_norm"]
    for (name, p), q in zip(trainer.model.named_parameters(), resumed.model.parameters(),
                            strict=True):
        assert torch.equal(p, q), name
    print(f"\nfull preset on CPU ({torch.get_num_threads()} threads): {n_params / 1e6:.1f} M "
          f"parameters, step {step_s:.1f} s at 1 sample x 16384 points, horizon {HORIZON}; "
          f"memory predicted {pred.total / 2**30:.2f} GiB, measured {meas['total'] / 2**30:.2f}"
          f" GiB (x{ratio:.3f}); checkpoint {size / 2**20:.0f} MiB; "
          f"{time.perf_counter() - t0:.0f} s in all")
