"""Trainer overhead: step time of ``Trainer.train_step`` vs a bare PyTorch loop.

Both run the same model, the same loss function (``Trainer.compute_loss``) and the same batch
size; the bare loop reuses one pre-drawn batch and does only forward, backward, clip and AdamW.
The difference is the trainer's bookkeeping: data drawing, regime sampler, curriculum, LR
schedule, EMA. Target ratio <= 1.05.

    .venv/bin/python benchmarks/trainer_overhead.py --preset demo --steps 20 --threads 1

Data: ``--data DIR`` (a dataset directory with train.nc); by default the demo dataset in
results/data/channel_demo, generated first (about 35 s) when it does not exist.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

from physweep.configs import to_dict
from physweep.model.corrector import CorrectorConfig
from physweep.physics.dataset import DatasetConfig, generate_dataset, load_split
from physweep.plan.config import REPO_ROOT, load_workflow_config
from physweep.plan.spec import preset_model
from physweep.train.loop import TrainConfig, Trainer

DEMO_DATA = Path(__file__).resolve().parents[1] / "results" / "data" / "channel_demo"


def make_split(args):
    data = Path(args.data) if args.data else DEMO_DATA
    if not (data / "train.nc").exists():
        print(f"generating the demo dataset in {data} ...", flush=True)
        generate_dataset(DatasetConfig(), data, progress=False)
    return load_split(data / "train.nc")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="demo", choices=["demo", "full"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", default=None, help="dataset dir with train.nc (default: demo data)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    split = make_split(args)
    pts = min(256, int(split.mask.sum(dim=(1, 2)).min()))
    train = TrainConfig(batch_tokens=4 * pts, points_per_sample=pts, micro_batch=2,
                        budget_tokens=4 * pts * 10 * args.steps, max_horizon=2,
                        curriculum_stages=1, log_every=10**9, device="cpu", threads=args.threads)
    config = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())
    config["preset"] = args.preset
    model = preset_model(load_workflow_config(config, REPO_ROOT))  # the preset's baseline
    spec = {"run": "bench", "model": model,
            "corrector": to_dict(CorrectorConfig()), "train": to_dict(train)}
    trainer = Trainer(spec, split)
    h = trainer.horizon()

    def bare_step(batches):
        trainer.optimizer.zero_grad(set_to_none=True)
        for b in batches:
            loss, _, _ = trainer.compute_loss(b, h)
            (loss / len(batches)).backward()
        torch.nn.utils.clip_grad_norm_(trainer.modules.parameters(), 1.0)
        trainer.optimizer.step()

    n_micro = train.samples_per_step // train.micro_batch
    traj = trainer.sampler.sample(train.samples_per_step, trainer.gen)
    batches = [trainer.draw_batch(traj[k * train.micro_batch:(k + 1) * train.micro_batch], h)
               for k in range(n_micro)]
    for _ in range(2):  # warm-up both paths
        bare_step(batches)
        trainer.train_step()
    t_bare, t_full = [], []
    for _ in range(args.steps):  # interleaved so drifts hit both equally
        t0 = time.perf_counter()
        bare_step(batches)
        t_bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        trainer.train_step()
        t_full.append(time.perf_counter() - t0)
    bare = sorted(t_bare)[len(t_bare) // 2]
    full = sorted(t_full)[len(t_full) // 2]
    print(f"preset {args.preset}: threads {args.threads}, horizon {h}, "
          f"{train.batch_tokens} tokens/step")
    print(f"  bare loop  {bare * 1e3:8.1f} ms/step  {train.batch_tokens / bare:10.0f} tokens/s")
    print(f"  trainer    {full * 1e3:8.1f} ms/step  {train.batch_tokens / full:10.0f} tokens/s")
    print(f"  ratio trainer/bare = {full / bare:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
