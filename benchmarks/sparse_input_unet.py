"""Is the UPT's gap to the reference U-Net information (input sparsity) or architecture? (issue #11)

The UPT surrogate reads its start state at ``points_per_sample`` (demo: 256 of 32 x 64 = 2048,
12.5 %) random fluid cells and predicts the full grid as *anchor + change*, the anchor being the
exact stored start state (``Trainer.compute_loss``, ``evaluate.rollout``); the reference U-Net
reads the whole grid. This benchmark trains, by the same trainer with the same reference spec,
steps and data draws, and evaluates with the preset's small suite on the same samples:

* ``reference``: the reference U-Net as the workflow trains it (full-grid input);
* ``sparse``: the same U-Net whose input state is known only at the same number of random fluid
  cells, drawn by the UPT's sampler (``physics.dataset.sample_points``, training: the trainer's
  generator, evaluation: the suite's generator, in the UPT's order):
    - the other fluid cells are filled by inverse-squared-distance interpolation of the 4 nearest
      observed cells (physical distance; exact on observed cells; the UPT's fallback anchor
      uses the same rule; ``--fill-neighbours 1``: the nearest observed cell), obstacle cells
      hold the wall state as in the full input;
    - one extra input channel is 1 on observed cells, 0 elsewhere (the fluid-mask and x, y
      channels are kept: the geometry is known to both models, as it is to the evaluation);
    - the U-Net rolls out autoregressively on this *belief* state, b_s = step(b_{s-1}), and its
      prediction at lead s is ``exact start state + (b_s - b_0)``: the change comes from the
      sparse input only, the anchor is exact -- what the UPT gets;
* ``surrogate`` (optional, ``--models ... surrogate``): round A's baseline UPT run, as in
  ``surrogate_learning.py`` (its eval's ``nrmse_reference`` is the full-input U-Net's).

Prints per model and step count: training seconds, nRMSE, ÷ persistence, ÷ the full-input U-Net
of the same run and steps.

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/sparse_input_unet.py \\
        --steps 250 600 --threads 1 --data results/data/channel_demo

Measured (demo data, small eval: 6 test trajectories x 3 starts, leads 1-8; 1 thread on a
shared 2-core CPU; persistence 0.652), nRMSE (÷ persistence, ÷ full-input U-Net):

    steps  full-input U-Net   sparse U-Net (IDW-4)      sparse (nearest)      UPT
    250    0.310 (0.475)      0.339 (0.520, 1.09)       0.339 (0.520, 1.10)   0.566 (0.868, 1.83)
    600    0.212 (0.326)      0.239 (0.367, 1.13)       0.232 (0.355, 1.09)   0.522 (0.800, 2.46)
    seed 1, 250: 0.281 / 0.340 (1.21);  600: 0.198 / 0.234 (1.18)

Training took 35-95 s per U-Net, 138 / 305 s for the UPT. Reading: the input sparsity costs the
U-Net 9-21 % of nRMSE; the UPT is 83-146 % above the full-input U-Net, so most of its gap is the
architecture / its learning, not the 256-point input.

The package is not changed: the sparse variant is a subclass of the U-Net and of the Trainer
here, and the evaluation is ``evaluate_checkpoint`` with its model loader and rollout replaced
for this model (``unittest.mock.patch`` on the names ``evaluate.suite`` imported).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

from physweep.configs import from_dict
from physweep.evaluate import suite as suite_mod
from physweep.evaluate.rollout import RolloutResult, finish_outputs
from physweep.evaluate.suite import evaluate_checkpoint
from physweep.model.surrogate import load_checkpoint
from physweep.model.unet import UNet, UNetConfig, _double_conv
from physweep.physics.dataset import load_split, sample_points
from physweep.train import loop
from physweep.train.loop import Trainer
from physweep.train.reference import reference_spec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from surrogate_learning import setup, surrogate_spec  # noqa: E402

#: observed cells interpolated (inverse squared physical distance) to fill an unobserved cell
FILL_NEIGHBOURS = 4


def fill_grid(values: torch.Tensor, idx: torch.Tensor, coords: torch.Tensor, mask: torch.Tensor,
              wall: torch.Tensor) -> torch.Tensor:
    """(C, H*W) normalised grid state known at flat cells ``idx`` (P,) -> (C, H, W) filled state.

    Every cell gets the inverse-squared-distance mean of its FILL_NEIGHBOURS nearest observed
    cells (an observed cell: its own value), obstacle cells the wall state ``wall`` (C,)."""
    c = values.shape[0]
    hh, ww = mask.shape
    xy = coords.reshape(-1, 2).double()
    d2 = torch.cdist(xy, xy[idx]).pow(2)  # (H*W, P)
    d2, near = d2.topk(FILL_NEIGHBOURS, dim=1, largest=False)
    w = 1.0 / (d2 + 1e-20)
    w = w / w.sum(dim=1, keepdim=True)
    filled = (w.unsqueeze(0) * values[:, idx].double()[:, near]).sum(dim=-1)  # (C, H*W)
    filled = filled.to(values.dtype).reshape(c, hh, ww)
    return torch.where(mask, filled, wall.view(-1, 1, 1))


def observed_map(idx: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    obs = torch.zeros(shape[0] * shape[1])
    obs[idx] = 1.0
    return obs.reshape(1, *shape)


class SparseUNet(UNet):
    """The reference U-Net with one more input channel (observed cells), rolled out on a belief
    state built from the observed cells and anchored on the exact start state."""

    def __init__(self, cfg: UNetConfig):
        super().__init__(cfg)
        self.down[0] = _double_conv(cfg.in_channels + 4, cfg.width)

    def wall(self, like: torch.Tensor) -> torch.Tensor:
        return self.normalize(torch.zeros(self.cfg.in_channels, dtype=like.dtype,
                                          device=like.device), dim=0)

    def step_obs(self, state, obs, mask, coords):
        """UNet.step with the observed-cell channel: (B, C, H, W), (B, 1, H, W), (B, H, W)."""
        return self.step(state, mask, coords, extra=obs)

    def rollout_sparse(self, belief0, obs, anchor, mask, coords, horizon):
        """(B, C, H, W) filled start state, observed map, exact start state -> (B, T, C, H, W)
        normalised predictions ``anchor + (b_s - b_0)``."""
        b, out = belief0, []
        for _ in range(horizon):
            b = self.step_obs(b, obs, mask, coords)
            out.append(anchor + (b - belief0))
        return torch.stack(out, dim=1)


class SparseTrainer(Trainer):
    """The trainer with the sparse U-Net: same draws (window, points) as for the reference, the
    U-Net loss on the anchored sparse rollout."""

    def __init__(self, spec, split):
        with mock.patch.object(loop, "UNet", SparseUNet):
            super().__init__(spec, split)
        assert isinstance(self.model, SparseUNet)

    def draw_batch(self, traj, h):
        # Trainer.draw_batch, keeping the drawn cells (the same generator calls in the same order)
        cfg, split, g, m = self.cfg, self.split, self.gen, self.model
        c = split.fields.shape[2]
        hh, ww = split.grid_shape
        target, state0, belief0, obs = [], [], [], []
        wall = m.wall(split.fields)
        for i in traj.tolist():
            t0 = int(torch.randint(split.n_time - h, (1,), generator=g))
            idx = sample_points(split.mask[i], cfg.points_per_sample, g)
            s0 = m.normalize(self.fields[i, t0], dim=0)  # (C, H, W)
            target.append(self.fields[i, t0 + 1 : t0 + 1 + h])
            state0.append(s0)
            belief0.append(fill_grid(s0.reshape(c, -1), idx, split.coords, split.mask[i], wall))
            obs.append(observed_map(idx, (hh, ww)))
        d = self.device
        return {"traj": traj, "target": m.normalize(torch.stack(target).to(d), dim=2),
                "state0": torch.stack(state0).to(d), "belief0": torch.stack(belief0).to(d),
                "obs": torch.stack(obs).to(d),
                "mask": split.mask[traj].to(d), "inflow": split.inflow[traj].to(d)}

    def compute_loss(self, batch, h):
        # Trainer._unet_loss (projection_weight is 0 for the reference) on the sparse rollout
        assert self.cfg.projection_weight == 0
        target = batch["target"]
        pred = self.model.rollout_sparse(batch["belief0"], batch["obs"], batch["state0"],
                                         batch["mask"], self.split.coords.to(self.device), h)
        per_sample = (self.channel_weight * (pred.float() - target).pow(2)).mean(dim=(1, 2, 3, 4))
        zero = per_sample.new_zeros(())
        b, _, c, hh, ww = target.shape
        s0 = batch["state0"].reshape(b, c, -1).transpose(1, 2)  # (B, H*W, C) as _persistence reads
        parts = {"loss_rollout": per_sample.mean(), "loss_inverse_encode": zero,
                 "loss_inverse_decode": zero, "loss_corrector": zero, "loss_physics": zero,
                 "loss_persistence": self._persistence(s0, target)}
        return parts["loss_rollout"], {k: v.detach() for k, v in parts.items()}, per_sample.detach()


def train_sparse(spec, data_dir: Path, checkpoint_out: Path, log_out: Path, threads: int):
    """loop.train_run for the sparse U-Net (no resume)."""
    torch.set_num_threads(threads)
    trainer = SparseTrainer(spec, load_split(Path(data_dir) / "train.nc"))
    return trainer.run(trainer.total_steps, checkpoint_out, log_out, None)


def load_sparse(path, ckpt=None):
    ckpt = load_checkpoint(path) if ckpt is None else ckpt
    model = SparseUNet(from_dict(UNetConfig, ckpt["model_config"], where=str(path)))
    model.load_state_dict(ckpt["ema"]["surrogate"])
    return model.eval(), ckpt.get("spec", {})


def rollout_sparse(model, denoiser, corrector, split, traj, start, horizon, points, generator,
                   members, projection_weight, grid, device="cpu", batch_members=False):
    """rollout_ensemble for the sparse U-Net: per trajectory the start state is read at
    ``points`` fluid cells (sample_points with the suite's generator, in the UPT's order), the
    rest filled; predictions anchored on the stored start state; Dirichlet data imposed."""
    device = torch.device(device)
    model = model.to(device).eval()
    c = split.fields.shape[2]
    hh, ww = split.grid_shape
    coords = split.coords.to(device)
    wall = model.wall(split.fields)
    out, seconds = [], 0.0
    for i in traj:
        mask = split.mask[i].to(device)
        idx = sample_points(split.mask[i], points, generator)
        t0 = time.perf_counter()
        with torch.no_grad():
            s0 = model.normalize(split.fields[i, start], dim=0)  # (C, H, W)
            b0 = fill_grid(s0.reshape(c, -1), idx, split.coords, split.mask[i], wall)
            f = model.rollout_sparse(b0[None].to(device), observed_map(idx, (hh, ww))[None],
                                     s0[None].to(device), mask[None], coords, horizon)[0]
            f = model.denormalize(f, dim=1)
            f = finish_outputs(f, mask.expand(horizon, -1, -1),
                               split.inflow[i].to(device).expand(horizon, -1), grid,
                               projection_weight)
        seconds += time.perf_counter() - t0
        out.append(f.reshape(1, horizon, c, hh, ww).float().cpu().expand(members, -1, -1, -1, -1))
    return RolloutResult(torch.stack(out, dim=1), seconds / max(1, len(traj) * horizon), 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[250, 600])
    ap.add_argument("--models", nargs="+", default=["reference", "sparse"],
                    choices=["reference", "sparse", "surrogate"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", default=None)
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--fill-neighbours", type=int, default=FILL_NEIGHBOURS,
                    help="observed cells the fill interpolates (1: nearest observed cell)")
    ap.add_argument("--seed", type=int, default=None,
                    help="training seed of every model (default: the specs' own, 0)")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    globals()["FILL_NEIGHBOURS"] = args.fill_neighbours  # read by fill_grid at call time
    torch.set_num_threads(args.threads)
    data, wcfg, suite = setup(args.data, args.preset)
    preset = wcfg.preset
    order = [m for m in ("reference", "sparse", "surrogate") if m in args.models]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for steps in args.steps:
            ref = copy.deepcopy(dict(preset["reference"]))
            ref["steps"] = steps
            evals = {}
            for kind in order:
                if kind == "surrogate":
                    spec = surrogate_spec(wcfg, steps)
                else:
                    spec = reference_spec(ref, dict(preset["train"]), data.name)
                    if kind == "sparse":
                        spec["run"] = f"reference_sparse_{data.name}"
                        spec["sparse_input_points"] = suite.points
                        assert spec["train"]["points_per_sample"] == suite.points
                spec["train"]["threads"] = args.threads
                if args.seed is not None:
                    spec["seed"] = spec["train"]["seed"] = args.seed
                out = Path(tmp) / f"{kind}_{steps}"
                out.mkdir()
                t = time.perf_counter()
                if kind == "sparse":
                    train_sparse(spec, data, out / "checkpoint.pt", out / "train_log.nc",
                                 args.threads)
                else:
                    loop.train_run(spec, data, out / "checkpoint.pt", out / "train_log.nc",
                                   threads=args.threads, progress=False)
                seconds = time.perf_counter() - t
                evals[kind] = out / "small_eval.nc"
                refer = evals.get("reference") if kind != "reference" else None
                t = time.perf_counter()
                if kind == "sparse":
                    with mock.patch.object(suite_mod, "load_model", load_sparse), \
                            mock.patch.object(suite_mod, "rollout_ensemble", rollout_sparse):
                        s = evaluate_checkpoint(out / "checkpoint.pt", data, suite, evals[kind],
                                                threads=args.threads, reference=refer)
                else:
                    s = evaluate_checkpoint(out / "checkpoint.pt", data, suite, evals[kind],
                                            threads=args.threads, reference=refer)
                eval_s = time.perf_counter() - t
                rows.append({"model": kind, "steps": steps, "train_s": seconds, "eval_s": eval_s,
                             **{k: float(s[k]) for k in (
                                 "nrmse", "nrmse_persistence", "nrmse_linear", "nrmse_reference",
                                 "nrmse_long", "nrmse_u", "nrmse_v", "nrmse_p")}})
                print(f"  {kind} {steps} steps: nRMSE {s['nrmse']:.4f} (train {seconds:.0f} s, "
                      f"eval {eval_s:.0f} s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print(f"\nsmall eval ({suite.n_traj} test trajectories x {suite.starts} starts, leads "
          f"1-{suite.horizon}, {suite.points} input points), preset {args.preset}, "
          f"{args.threads} threads, fill: IDW of {args.fill_neighbours} nearest observed, "
          f"training seed "
          f"{'of the specs' if args.seed is None else args.seed}")
    print("| model | steps | train s | nRMSE | nRMSE leads >= 5 | u / v / p | ÷ persistence "
          "| ÷ full-input U-Net (same steps) |")
    print("|---|---|---|---|---|---|---|---|")
    ref_at = {r["steps"]: r["nrmse"] for r in rows if r["model"] == "reference"}
    for r in rows:
        rr = r["nrmse"] / ref_at[r["steps"]] if r["steps"] in ref_at else float("nan")
        print(f"| {r['model']} | {r['steps']} | {r['train_s']:.0f} | {r['nrmse']:.4f} | "
              f"{r['nrmse_long']:.4f} | {r['nrmse_u']:.3f} / {r['nrmse_v']:.3f} / "
              f"{r['nrmse_p']:.3f} | {r['nrmse'] / r['nrmse_persistence']:.3f} | {rr:.2f} |")
    print(f"persistence nRMSE {rows[0]['nrmse_persistence']:.4f}, linear extrapolation "
          f"{rows[0]['nrmse_linear']:.4f} (same samples)")


if __name__ == "__main__":
    main()
