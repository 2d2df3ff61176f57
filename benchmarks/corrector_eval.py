"""Corrector on vs off on the same trained checkpoint: accuracy, calibration, runtime tax.

    python benchmarks/corrector_eval.py [CHECKPOINT] [--data results/data/channel_demo]

Default checkpoint: the demo round's baseline (results/round_a/runs/baseline/final/checkpoint.pt;
run `make demo` first). Every configuration rolls out the same test trajectories from the same
start with the same input points, to the suite's long horizon (2x the training horizon); prints
long-horizon nRMSE, correlation time (Pearson > 0.8), ECE / CRPS / spread-skill of the ensemble,
and seconds per rollout step, with the corrector's tax as a ratio against the plain rollout
measured in the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from physweep.evaluate import metrics
from physweep.evaluate.rollout import rollout_ensemble
from physweep.model.corrector import load_denoiser
from physweep.model.surrogate import load_checkpoint, load_model
from physweep.physics.dataset import load_split
from physweep.physics.gates import grid_info


def evaluate(model, denoiser, ccfg, split, grid, horizon, members, weight, long_from, seed=0,
             batch_members=False):
    gen = torch.Generator().manual_seed(seed)
    n = split.n_traj
    t0 = time.perf_counter()
    res = rollout_ensemble(model, denoiser, ccfg, split, list(range(n)), 0, horizon, None, gen,
                           members, weight, grid, batch_members=batch_members)
    wall = time.perf_counter() - t0
    ens = res.fields  # (M, N, T, C, H, W)
    truth = split.fields[:n, 1:1 + horizon]
    mean = ens.mean(0)
    rows = {"nrmse_long": [], "corr_time": [], "ece": [], "crps": [], "ssr": []}
    for i in range(n):
        mask = split.mask[i]
        nr = metrics.nrmse(mean[i], truth[i], mask)  # (T,)
        rows["nrmse_long"].append(float(nr[long_from - 1:].mean()))
        rows["corr_time"].append(float(metrics.correlation_time(metrics.pearson(mean[i], truth[i], mask))))
        fluid = mask.expand_as(truth[i])
        e_i, t_i = ens[:, i][:, fluid], truth[i][fluid]
        rows["ece"].append(metrics.quantile_ece(e_i, t_i))
        rows["crps"].append(float(metrics.crps_ensemble(e_i, t_i).mean()))
        rows["ssr"].append(metrics.spread_skill_ratio(e_i, t_i))
    out = {k: sum(v) / len(v) for k, v in rows.items()}
    out.update(s_per_step=res.s_per_step, calls=res.corrector_calls, wall=wall)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?", default="results/round_a/runs/baseline/final/checkpoint.pt")
    ap.add_argument("--data", default="results/data/channel_demo")
    ap.add_argument("--horizon", type=int, default=12)
    ap.add_argument("--long-from", type=int, default=7)
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    ckpt = load_checkpoint(args.checkpoint)
    model, spec = load_model(args.checkpoint, ckpt)
    denoiser, ccfg = load_denoiser(ckpt, model)
    weight = float(spec["train"]["projection_weight"])
    split = load_split(Path(args.data) / "test.nc")
    grid = grid_info(split)
    print(f"checkpoint {args.checkpoint}: run {spec['run']}, trained corrector {ccfg}")
    print(f"{split.n_traj} test trajectories, horizon {args.horizon} (long from lead {args.long_from}), "
          f"{args.members} members, projection weight {weight}\n")
    plain = dataclasses.replace(ccfg, steps=0)
    configs = {
        "plain (steps=0), one member": plain,
        f"plain, {args.members} identical members batched": plain,
        f"corrector (cadence {ccfg.cadence}, steps {ccfg.steps}, lambda {ccfg.guidance})": ccfg,
        "corrector unguided (lambda 0)": dataclasses.replace(ccfg, guidance=0.0),
        f"corrector cadence {max(1, ccfg.cadence // 2)}": dataclasses.replace(
            ccfg, cadence=max(1, ccfg.cadence // 2)),
    }
    header = (f"{'configuration':52s} {'nRMSE long':>10s} {'corr.time':>9s} {'ECE':>7s} {'CRPS':>8s} "
              f"{'spread/skill':>12s} {'s/step':>8s} {'tax':>6s} {'tax/batch':>10s}")
    print(header)
    print("-" * len(header))
    base = batched = None
    for name, cfg in configs.items():
        r = evaluate(model, denoiser, cfg, split, grid, args.horizon, args.members, weight, args.long_from,
                     batch_members=name.startswith("plain,"))
        base = base or r["s_per_step"]
        if name.startswith("plain,"):
            batched = r["s_per_step"]
        same = f"{r['s_per_step'] / batched:9.2f}x" if batched else f"{'':10s}"
        print(f"{name:52s} {r['nrmse_long']:10.4f} {r['corr_time']:9.2f} {r['ece']:7.4f} {r['crps']:8.4f} "
              f"{r['ssr']:12.3f} {r['s_per_step']:8.4f} {r['s_per_step'] / base:6.2f}x {same}")
    print("\ns/step is per trajectory and rollout step for the whole ensemble. 'tax': against one "
          "plain member (what a deterministic\nsurrogate costs); 'tax/batch': against the plain "
          f"rollout of the same {args.members}-member batch (the corrector's own cost).")


if __name__ == "__main__":
    main()
