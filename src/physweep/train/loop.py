"""Training loop: load, step, log, checkpoint (entry point ``train_run``).

Vocabulary
----------
* sample: one trajectory window -- a state x_t0 and the next h = horizon states of one trajectory.
* token: one *input point* of one sample. ``points_per_sample`` fluid cells of x_t0 are fed to the
  encoder, so ``batch_tokens = samples_per_step × points_per_sample`` and
  ``total_steps = budget_tokens // batch_tokens`` (the budget is the same for every run of a
  round, so runs are compared at equal tokens).
* ``micro_batch`` samples go through one forward/backward; gradients are accumulated over
  ``ceil(samples_per_step / micro_batch)`` micro-batches (the last one may be smaller; each is
  weighted by its share of the samples) before one optimizer step.

Loss of one sample (fields normalised by per-channel training statistics; all terms MSE):

    L = L_rollout + inverse_encode · L_ie + inverse_decode · L_id + projection_weight · L_phys
        + L_corrector

* L_rollout: latent rollout z_0 = E(x_t0), z_s = A(z_{s-1}), decoded at every grid cell (fluid
  and solid) for s = 1 … h and compared with x_{t0+s}; with ``query_points`` > 0 only the first
  ``grid_samples`` samples of a micro-batch are decoded on the whole grid (the physics residual
  needs it), the others at that many random cells per sample (the same cells for every lead;
  UPT trains on sampled output positions), where their start context is computed too: a demo
  step costs about half. Channel c weighted by the inverse variance of
  its one-step change (``change_weights``), so u, v and p count alike and persistence scores
  about 1 per lead.
  The prediction at lead s is x_t0 + decode_change(z_s, context of the start state)
  (``Surrogate.predict``).
* L_id (``inverse_decode``, UPT's "decoder inverts the encoder"): ‖D(E(x_t0)) − x_t0‖² at the
  input points -- an absolute reconstruction, so only an encoder that carries the state can
  lower it (before, it compared anchored outputs and rewarded a decoder that outputs nothing).
* L_ie (``inverse_encode``, UPT's "approximator stays in the encoder's range"):
  ‖D(E(x̂_1)) − x̂_1‖² with x̂_1 = D(A(z_0)) the decoded lead-1 latent at the input points and the
  detached x̂_1 as target: re-encoding the prediction and decoding it again reproduces it. The
  earlier latent-space form ‖E(D(ẑ_1)) − ẑ_1‖² was satisfied exactly by a constant encoder
  (ẑ_1 = A(c) for every input) and so rewarded collapse; in field space a constant encoder
  leaves the whole variation of the predictions as error.
* L_phys: mean ``physics.gates.physics_residual`` of the denormalised decoded grid fields of all
  h steps of every sample, or with ``query_points`` of the ``grid_samples`` samples (units of
  the residual; weight = ``projection_weight``, the same w that blends the projection at
  inference: pred + (1 − e^−w)·(project(pred) − pred), ``evaluate.rollout``).
* L_corrector: the latent denoiser's noise-prediction loss (``model.corrector.denoiser_loss``),
  0 when ``steps = 0``.
A term whose weight is 0 is not computed.

Reproducibility: every random draw of the data path (regime, trajectory, window start, input
points, corrector noise) comes from one ``torch.Generator`` seeded with ``seed``; its state, the
torch/numpy/python global RNG states, optimizer, EMA, sampler and step are checkpointed, so a
run resumed from a probe checkpoint reproduces the uninterrupted run bit for bit on CPU (the
timing and energy columns of the log aside).

Preemption: SIGTERM or SIGUSR1 finishes the current step, saves the checkpoint and log and
returns status "preempted"; callers should then exit with ``PREEMPTED_EXIT_CODE``.

Identity: a run is what determines its result -- the run spec without the machine it runs on
(``run_identity``). ``TrainConfig.device`` and ``threads`` (``MACHINE_FIELDS``) say where a run
executes, not what it computes, so a probe trained with one thread count (or on one device)
resumes under another; the machine of every training segment is recorded in the log instead
(``hardware``, ``hardware_segments``).
"""

from __future__ import annotations

import json
import logging
import math
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from physweep.configs import from_dict, to_dict
from physweep.io import provenance, write_netcdf
from physweep.model.corrector import CorrectorConfig, build_denoiser, denoiser_loss
from physweep.model.surrogate import Surrogate, SurrogateConfig, load_checkpoint, save_checkpoint
from physweep.model.unet import UNet, UNetConfig
from physweep.physics.flowsplit import FlowSplit
from physweep.train.curriculum import Curriculum
from physweep.train.ema import EMA
from physweep.train.progress import PROGRESS_NAME, ProgressWriter
from physweep.train.sampler import RegimeSampler
from physweep.train.schedule import lr_at
from physweep.train.telemetry import EnergyMeter, WindowedEnergy, peak_memory_mb

log = logging.getLogger(__name__)

#: Exit code for a job that saved its checkpoint after SIGTERM/SIGUSR1 (EX_TEMPFAIL: retry).
PREEMPTED_EXIT_CODE = 75

LOG_SCALARS = ("loss", "loss_rollout", "loss_inverse_encode", "loss_inverse_decode",
               "loss_physics", "loss_corrector", "loss_persistence", "lr", "grad_norm",
               "horizon", "step_time_s",
               "tokens_per_s", "peak_mem_mb", "energy_j")
#: model kinds the trainer builds (spec["model_kind"]; default "upt") -> their config class
MODEL_KINDS = {"upt": SurrogateConfig, "unet": UNetConfig}
#: log columns that measure the machine, not the optimisation (excluded from bitwise checks)
MACHINE_COLUMNS = ("step_time_s", "tokens_per_s", "peak_mem_mb", "energy_j")
#: TrainConfig fields that say where a run executes, not what it computes: not part of a run's
#: identity (a resume on another machine / thread count / device is the same run)
MACHINE_FIELDS = ("device", "threads")


def machine_free(train: dict[str, Any]) -> dict[str, Any]:
    """A train config (dict) without its machine fields."""
    return {k: v for k, v in train.items() if k not in MACHINE_FIELDS}


def run_identity(spec: dict[str, Any]) -> dict[str, Any]:
    """What a resume compares: the run spec (JSON-normalised) without the machine fields."""
    ident = json.loads(json.dumps(spec, sort_keys=True, default=str))
    if isinstance(ident.get("train"), dict):
        ident["train"] = machine_free(ident["train"])
    return ident


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 3e-4  # peak LR, already scaled to batch_tokens by the planner
    warmup: float = 0.05  # fraction of total steps with linear warmup
    ema: float = 0.9995  # EMA decay of the weights used for evaluation
    inverse_encode: float = 0.5  # weight of ‖E(D(ẑ)) − ẑ‖² (approximator stays in E's range)
    inverse_decode: float = 0.5  # weight of ‖D(E(x)) − x‖² (decoder inverts encoder)
    projection_weight: float = 1.0  # w: physics-residual loss weight and projection blend
    max_horizon: int = 6  # final rollout length of the curriculum (steps)
    freeze_bottom_layers_on_expand: bool = True  # freeze encoder + lower half on expansion
    sampler_temp: float = 0.7  # regime sampler temperature T
    curriculum_stages: int = 3  # horizon stages from 1 to max_horizon
    batch_tokens: int = 2048  # input points per optimizer step
    points_per_sample: int = 256  # input points per sample
    query_points: int = 0  # cells decoded per sample (0 or >= grid cells: every cell)
    grid_samples: int = 2  # with query_points: samples per micro-batch decoded on the whole grid
    micro_batch: int = 4  # samples per forward/backward
    budget_tokens: int = 2048 * 60  # tokens per run (same for a round); steps = budget // batch
    weight_decay: float = 0.01  # AdamW decay on matrices (not biases / norms / embeddings)
    grad_clip: float = 1.0  # max global grad norm (<= 0: no clipping)
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" (a machine field: not the run's identity)
    precision: str = "fp32"  # "fp32" | "bf16" (autocast, CUDA only; CPU always fp32)
    compile: bool = False  # torch.compile encoder / approximator / decoder
    log_every: int = 10  # steps between log entries (the last step is always logged)
    checkpoint_every: int = 0  # steps between periodic checkpoints (0: only at the end)
    threads: int = 1  # torch.set_num_threads (a machine field; train_run(threads=) overrides)

    def __post_init__(self) -> None:
        if self.lr <= 0 or not 0 <= self.warmup < 1 or not 0 <= self.ema < 1:
            raise ValueError("need lr > 0, 0 <= warmup < 1, 0 <= ema < 1")
        for name in ("inverse_encode", "inverse_decode", "projection_weight", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("max_horizon", "curriculum_stages", "batch_tokens", "points_per_sample",
                     "micro_batch", "budget_tokens", "log_every", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.sampler_temp <= 0:
            raise ValueError("sampler_temp must be > 0")
        if not isinstance(self.query_points, int) or self.query_points < 0:
            raise ValueError(f"query_points must be an int >= 0, not {self.query_points!r}")
        if not isinstance(self.grid_samples, int) or self.grid_samples < 1:
            raise ValueError(f"grid_samples must be an int >= 1 (the physics residual needs the "
                             f"whole grid of at least one sample), not {self.grid_samples!r}")
        if self.batch_tokens % self.points_per_sample:
            raise ValueError("batch_tokens must be a multiple of points_per_sample")
        if self.budget_tokens < self.batch_tokens:
            raise ValueError("budget_tokens < batch_tokens: zero steps")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto|cpu|cuda, not {self.device!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32|bf16, not {self.precision!r}")
        if self.checkpoint_every < 0:
            raise ValueError("checkpoint_every must be >= 0")

    @property
    def samples_per_step(self) -> int:
        return self.batch_tokens // self.points_per_sample

    @property
    def total_steps(self) -> int:
        return self.budget_tokens // self.batch_tokens


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def field_statistics(split: FlowSplit) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std over the fluid cells of every snapshot (float64 sums)."""
    f = split.fields.double()  # (N, T, C, H, W)
    w = split.mask[:, None, None].double().expand_as(f)  # (N, T, C, H, W)
    n = w.sum(dim=(0, 1, 3, 4))
    mean = (f * w).sum(dim=(0, 1, 3, 4)) / n
    var = (((f - mean.view(1, 1, -1, 1, 1)) ** 2) * w).sum(dim=(0, 1, 3, 4)) / n
    return mean.float(), var.sqrt().clamp_min(1e-6).float()


def change_weights(split: FlowSplit, std: torch.Tensor) -> torch.Tensor:
    """Per-channel weights of the rollout loss: 1 / var(one-step change).

    In fields normalised by their own std the velocity component v changes 2-3× as much per
    snapshot as u and p (the issue-#11-era demo data: 0.39 vs 0.17 and 0.14 std), so a plain
    MSE is mostly v, while the nRMSE averages the three channels. Weighting each channel by the
    inverse variance of its change gives every channel's dynamics the same weight, and puts the
    rollout loss in units of the one-step change: persistence scores about 1 per channel at
    lead 1, as a trivial encoder scores about 1 on the inverse losses (unit-variance fields).
    Normalised to mean 1 instead (u 1.11, v 0.21, p 1.67), the rollout term was ~30x smaller
    than the inverse and corrector terms and the shared encoder/decoder followed those (demo,
    250 steps: small-eval nRMSE 0.566 normalised vs 0.521 here, same seed and data).
    """
    f = split.fields.double() / std.double().view(1, 1, -1, 1, 1)  # (N, T, C, H, W)
    d = f[:, 1:] - f[:, :-1]
    w = split.mask[:, None, None].double().expand_as(d)
    var = (d.pow(2) * w).sum(dim=(0, 1, 3, 4)) / w.sum(dim=(0, 1, 3, 4))
    return (1.0 / var.clamp_min(1e-12)).float()


def _rng_state(gen: torch.Generator) -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {"torch": torch.get_rng_state(), "data": gen.get_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
            "python": [version, list(py_state), py_gauss]}


def _set_rng_state(state: dict[str, Any], gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["data"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, py_state, py_gauss = state["python"]
    random.setstate((version, tuple(py_state), py_gauss))


class _Preemption:
    """SIGTERM / SIGUSR1 -> flag (handlers installed only from the main thread)."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Preemption:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGUSR1):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        log.warning("signal %d: finishing the current step, then checkpointing", signum)
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Trainer:
    """Holds model, corrector, optimizer, EMA, sampler, curriculum and the log of one run."""

    def __init__(self, spec: dict[str, Any], split: FlowSplit):
        self.spec = spec
        # "upt": the surrogate the playbook tunes; "unet": the reference model (model/unet.py)
        self.kind = spec.get("model_kind", "upt")
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"run spec model_kind must be one of {MODEL_KINDS}, not {self.kind!r}")
        self.mcfg = from_dict(MODEL_KINDS[self.kind], spec["model"], where="run spec model")
        self.ccfg = from_dict(CorrectorConfig, spec["corrector"], where="run spec corrector")
        if self.kind == "unet" and self.ccfg.steps:
            raise ValueError("run spec corrector.steps must be 0 for model_kind unet "
                             "(the corrector refines UPT latents)")
        self.cfg = from_dict(TrainConfig, spec["train"], where="run spec train")
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        random.seed(cfg.seed)
        self.device = resolve_device(cfg.device)
        self.split = split
        from physweep.physics.gates import grid_info

        self.grid = grid_info(split)
        self.model = Surrogate(self.mcfg) if self.kind == "upt" else UNet(self.mcfg)
        mean, std = field_statistics(split)
        # (1, 1, C, 1, 1) rollout-loss weight of every channel (a pure function of the data)
        self.channel_weight = change_weights(split, std).view(1, 1, -1, 1, 1)
        coords = split.coords.reshape(-1, 2)
        self.model.set_statistics(mean, std, coords.min(0).values, coords.max(0).values)
        self.denoiser = build_denoiser(self.model, self.ccfg) if self.kind == "upt" else nn.Module()
        self.model.to(self.device)
        self.denoiser.to(self.device)
        self.modules = nn.ModuleDict({"surrogate": self.model, "denoiser": self.denoiser})
        self.ema = EMA(self.modules, cfg.ema)
        decay, no_decay = [], []
        for p in self.modules.parameters():
            (decay if p.ndim >= 2 else no_decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
        self.sampler = RegimeSampler(split.regime, len(split.regime_names), cfg.sampler_temp)
        self.total_steps = cfg.total_steps
        self.curriculum = Curriculum(cfg.max_horizon, cfg.curriculum_stages, self.total_steps,
                                     cfg.freeze_bottom_layers_on_expand)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.tokens_seen = 0
        self.seconds = 0.0
        self.energy_j: float | None = 0.0
        self.status = "ok"
        self.diverged_step = -1
        self.history: dict[str, list] = {k: [] for k in ("step", *LOG_SCALARS, "sampler_prob")}
        self.segments: list[dict[str, Any]] = []  # the machine of each training segment
        # grid positions and per-trajectory data on the device
        self.grid_pos = split.coords.reshape(1, -1, 2).to(self.device)  # (1, H*W, 2)
        self.channel_weight = self.channel_weight.to(self.device)
        self.fields = split.fields  # (N, T, C, H, W), physical, stays on CPU
        self.amp = cfg.precision == "bf16" and self.device.type == "cuda"
        if cfg.compile:
            parts = ((self.model.encoder, self.model.approximator, self.model.decoder)
                     if self.kind == "upt" else (self.model,))
            for m in parts:
                m.compile()

    # --- data ------------------------------------------------------------------------------
    def horizon(self) -> int:
        return min(self.curriculum.horizon(self.step), self.split.n_time - 1)

    def draw_batch(self, traj: torch.Tensor, h: int) -> dict[str, torch.Tensor]:
        """Windows of the given trajectories: input points at t0, grid targets t0+1 … t0+h."""
        from physweep.physics.dataset import sample_points

        cfg, split, g = self.cfg, self.split, self.gen
        c = split.fields.shape[2]
        pos, vals, nxt, target, state0 = [], [], [], [], []
        for i in traj.tolist():
            t0 = int(torch.randint(split.n_time - h, (1,), generator=g))
            idx = sample_points(split.mask[i], cfg.points_per_sample, g)  # (P,)
            flat = self.fields[i].reshape(split.n_time, c, -1)  # (T, C, H*W)
            pos.append(split.coords.reshape(-1, 2)[idx])  # (P, 2)
            vals.append(flat[t0][:, idx].T)  # (P, C)
            nxt.append(flat[t0 + 1][:, idx].T)
            target.append(self.fields[i, t0 + 1 : t0 + 1 + h])  # (h, C, H, W)
            state0.append(flat[t0].T)  # (H*W, C): the grid targets' exact anchor (state at t0)
        d = self.device
        m = self.model
        extra = {}
        n_cells = split.fields.shape[-2] * split.fields.shape[-1]
        if self.kind == "upt" and 0 < cfg.query_points < n_cells:
            # the cells at which a sample's leads are decoded (uniform, without replacement;
            # drawn for every sample, used by those beyond the micro-batch's grid_samples)
            extra["query_idx"] = torch.stack(
                [torch.randperm(n_cells, generator=g)[: cfg.query_points] for _ in traj.tolist()]
            ).to(d)
        return {**extra, "traj": traj, "pos": torch.stack(pos).to(d),
                "vals": m.normalize(torch.stack(vals).to(d)),
                "next": m.normalize(torch.stack(nxt).to(d)),
                "target": m.normalize(torch.stack(target).to(d), dim=2),
                "state0": m.normalize(torch.stack(state0).to(d)),
                "mask": split.mask[traj].to(d), "inflow": split.inflow[traj].to(d)}

    # --- loss ------------------------------------------------------------------------------
    def compute_loss(self, batch: dict[str, torch.Tensor], h: int
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """Total loss, its detached parts, and the per-sample rollout loss (B,) for the sampler."""
        from physweep.physics.gates import physics_residual

        cfg, m = self.cfg, self.model
        pos, vals, target = batch["pos"], batch["vals"], batch["target"]
        b = pos.shape[0]
        _, _, c, hh, ww = target.shape
        if self.kind == "unet":
            return self._unet_loss(batch, h)
        q = self.grid_pos.expand(b, -1, -1)  # (B, H*W, 2)
        sub = batch.get("query_idx")  # (B, Qs) or None
        # UPT-style output sampling (``query_points``): the first ``grid_samples`` samples decode
        # every lead on the whole grid (the physics residual needs the grid), the others every
        # lead at their Qs sampled cells -- and their start context is computed there only
        g = b if sub is None else min(cfg.grid_samples, b)
        z0 = m.encode(pos, vals)
        zs, z = [], z0
        for _ in range(h):
            z = m.approximate(z)
            zs.append(z)
        zs_all = torch.stack(zs, dim=1)  # (B, h, L, D)
        weight = self.channel_weight.view(1, 1, c, 1)

        def rollout_at(rows: slice, cells: torch.Tensor | None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
            """Predictions (n, h, Q, C) of samples ``rows`` at their (n, Q) ``cells`` (None:
            every cell, in grid order) and their rollout loss (n,), the mean over the h leads.
            The anchor is the stored state at t0 (exact)."""
            query, anchor, tgt = q[rows], batch["state0"][rows], target[rows].flatten(3)
            if cells is not None:
                query = torch.gather(query, 1, cells.unsqueeze(-1).expand(-1, -1, 2))
                anchor = torch.gather(anchor, 1, cells.unsqueeze(-1).expand(-1, -1, c))
                tgt = torch.gather(tgt, 3, cells[:, None, None].expand(-1, h, c, -1))
            ctx = m.query_context(pos[rows], vals[rows], query)  # (n, Q, D)
            n, nq = query.shape[:2]
            out = m.predict(zs_all[rows].flatten(0, 1), anchor.repeat_interleave(h, 0),
                            query.repeat_interleave(h, 0), ctx.repeat_interleave(h, 0))
            out = out.reshape(n, h, nq, c)
            err = weight * (out.float().transpose(2, 3) - tgt).pow(2)  # (n, h, C, Q)
            return out, err.mean(dim=(2, 3)).mean(dim=1)

        pred, loss_grid = rollout_at(slice(0, g), None)  # g >= 1
        pred = pred.transpose(2, 3).reshape(g, h, c, hh, ww)  # (g, h, C, H, W)
        per_sample = [loss_grid]
        if g < b:
            per_sample.append(rollout_at(slice(g, b), sub[g:])[1])
        per_sample = torch.cat(per_sample)  # (B,)
        parts = {"loss_rollout": per_sample.mean(),
                 "loss_persistence": self._persistence(batch["state0"], target)}
        zero = per_sample.new_zeros(())
        # inverse decode: decoding the encoder's latent reproduces the input state itself (the
        # decoder reads absolute states), so it is minimised by an informative encoder only
        parts["loss_inverse_decode"] = (
            (m.decode(z0, pos).float() - vals).pow(2).mean() if cfg.inverse_decode > 0 else zero)
        if cfg.inverse_encode > 0:
            # inverse encode: the decoded prediction, re-encoded and decoded again, is reproduced
            # (the approximator's output stays in the encoder's range). Compared in field space
            # against the detached prediction: a constant encoder cannot satisfy it.
            x1 = m.decode(zs[0], pos)  # (B, P, C) prediction at the input points, lead 1
            parts["loss_inverse_encode"] = (
                m.decode(m.encode(pos, x1), pos).float() - x1.detach().float()).pow(2).mean()
        else:
            parts["loss_inverse_encode"] = zero
        if cfg.projection_weight > 0:
            phys = m.denormalize(pred.float().flatten(0, 1), dim=1)  # (g h, C, H, W)
            parts["loss_physics"] = physics_residual(
                phys, batch["mask"][:g].repeat_interleave(h, 0),
                batch["inflow"][:g].repeat_interleave(h, 0), self.grid).mean()
        else:
            parts["loss_physics"] = zero
        if self.ccfg.steps > 0:
            with torch.no_grad():
                z_next = m.encode(pos, batch["next"])
            parts["loss_corrector"] = denoiser_loss(self.denoiser, self.ccfg, z_next.float(),
                                                    z0.detach().float(), self.gen)
        else:
            parts["loss_corrector"] = zero
        total = (parts["loss_rollout"] + cfg.inverse_encode * parts["loss_inverse_encode"]
                 + cfg.inverse_decode * parts["loss_inverse_decode"]
                 + cfg.projection_weight * parts["loss_physics"] + parts["loss_corrector"])
        return total, {k: v.detach() for k, v in parts.items()}, per_sample.detach()

    def _persistence(self, state0: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The rollout loss that repeating the start state would score on the same batch (a
        fixed yardstick: the rollout loss rises with the curriculum's horizon, its ratio to this
        shows learning). Not part of the total loss."""
        b, h, c, hh, ww = target.shape
        s0 = state0.detach().transpose(1, 2).reshape(b, 1, c, hh, ww)
        return (self.channel_weight * (s0 - target).pow(2)).mean()

    def _unet_loss(self, batch: dict[str, torch.Tensor], h: int
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """The reference U-Net: grid rollout from the stored state at t0, the same rollout and
        physics terms as the surrogate (no latent, so no inverse or corrector terms)."""
        from physweep.physics.gates import physics_residual

        cfg, m, target = self.cfg, self.model, batch["target"]
        b, _, c, hh, ww = target.shape
        state0 = batch["state0"].transpose(1, 2).reshape(b, c, hh, ww)  # (B, C, H, W)
        pred = m.rollout_grid(state0, batch["mask"], self.split.coords.to(self.device), h)
        per_sample = (self.channel_weight * (pred.float() - target).pow(2)).mean(dim=(1, 2, 3, 4))
        zero = per_sample.new_zeros(())
        parts = {"loss_rollout": per_sample.mean(), "loss_inverse_encode": zero,
                 "loss_inverse_decode": zero, "loss_corrector": zero, "loss_physics": zero,
                 "loss_persistence": self._persistence(batch["state0"], target)}
        if cfg.projection_weight > 0:
            phys = m.denormalize(pred.float(), dim=2).flatten(0, 1)  # (B*h, C, H, W)
            parts["loss_physics"] = physics_residual(
                phys, batch["mask"].repeat_interleave(h, dim=0),
                batch["inflow"].repeat_interleave(h, dim=0), self.grid).mean()
        total = parts["loss_rollout"] + cfg.projection_weight * parts["loss_physics"]
        return total, {k: v.detach() for k, v in parts.items()}, per_sample.detach()

    # --- one optimizer step ----------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        t_start = time.perf_counter()
        self.curriculum.apply(self.step, self.model)
        h = self.horizon()
        lr = lr_at(self.step, self.total_steps, cfg.lr, cfg.warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.modules.train()
        self.optimizer.zero_grad(set_to_none=True)
        traj = self.sampler.sample(cfg.samples_per_step, self.gen)
        n = cfg.samples_per_step
        sums = dict.fromkeys(("loss", "loss_rollout", "loss_inverse_encode",
                              "loss_inverse_decode", "loss_physics", "loss_corrector",
                              "loss_persistence"), 0.0)
        finite = True
        for start in range(0, n, cfg.micro_batch):
            sub = traj[start : start + cfg.micro_batch]  # the last micro-batch may be smaller
            weight = len(sub) / n  # micro-batch losses are sample means: weight by its share
            batch = self.draw_batch(sub, h)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
                total, parts, per_sample = self.compute_loss(batch, h)
            if not bool(torch.isfinite(total)):
                finite = False
                sums["loss"] = float("nan")
                break
            (total * weight).backward()
            self.sampler.update(sub, per_sample)
            sums["loss"] += float(total.detach()) * weight
            for name, v in parts.items():
                sums[name] += float(v) * weight
        params = [p for p in self.modules.parameters() if p.grad is not None]
        if finite:
            max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
            finite = math.isfinite(grad_norm)
        else:
            grad_norm = float("nan")
        if finite:
            self.optimizer.step()
            self.ema.update(self.modules)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        dt = time.perf_counter() - t_start
        self.step += 1
        self.tokens_seen += cfg.batch_tokens
        self.seconds += dt
        return {**sums, "lr": lr, "grad_norm": grad_norm, "horizon": h, "step_time_s": dt,
                "tokens_per_s": cfg.batch_tokens / dt, "finite": finite}

    # --- log -------------------------------------------------------------------------------
    def record(self, row: dict[str, float]) -> None:
        self.history["step"].append(self.step)
        for k in LOG_SCALARS:
            self.history[k].append(float(row[k]))
        self.history["sampler_prob"].append(self.sampler.probabilities().float().tolist())

    def log_dataset(self, energy_source: str) -> xr.Dataset:
        hist = self.history
        n_reg = len(self.split.regime_names)
        data = {k: ("step", np.asarray(hist[k], dtype=np.float64)) for k in LOG_SCALARS}
        probs = np.asarray(hist["sampler_prob"], dtype=np.float64).reshape(-1, n_reg)
        data["sampler_prob"] = (("step", "regime"), probs)
        last = self.segments[-1] if self.segments else self.machine()
        attrs = {"run": str(self.spec.get("run", "")), "status": self.status,
                 "diverged_step": int(self.diverged_step), "tokens_seen": int(self.tokens_seen),
                 "steps_total": int(self.total_steps), "energy_source": energy_source,
                 **provenance(), "run_spec": json.dumps(self.spec, sort_keys=True, default=str),
                 # the machine: recorded, not part of the run's identity (run_identity)
                 "hardware": last["hardware"], "device": last["device"],
                 "threads": int(last["threads"]),
                 "hardware_segments": json.dumps(self.segments, sort_keys=True)}
        return xr.Dataset(data, coords={"step": np.asarray(hist["step"], dtype=np.int64),
                                        "regime": list(self.split.regime_names)}, attrs=attrs)

    # --- checkpoint ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "format": "physweep-train-1", "model_kind": self.kind,
            "status": self.status, "step": self.step, "total_steps": self.total_steps,
            "diverged_step": self.diverged_step, "tokens_seen": self.tokens_seen,
            "seconds": self.seconds, "energy_j": self.energy_j,
            "spec": json.loads(json.dumps(self.spec, default=str)),
            "model_config": to_dict(self.mcfg), "corrector_config": to_dict(self.ccfg),
            "train_config": to_dict(self.cfg),
            "weights": {"surrogate": self.model.state_dict(),
                        "denoiser": self.denoiser.state_dict()},
            "ema": {"surrogate": self.ema.module["surrogate"].state_dict(),
                    "denoiser": self.ema.module["denoiser"].state_dict()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"step": self.step, "total_steps": self.total_steps,
                          "base_lr": self.cfg.lr, "warmup": self.cfg.warmup},
            "sampler": self.sampler.state_dict(),
            "curriculum": self.curriculum.state_dict(self.step),
            "rng": _rng_state(self.gen),
            "norm_stats": {"field_mean": self.model.field_mean.cpu(),
                           "field_std": self.model.field_std.cpu(),
                           "pos_lo": self.model.pos_lo.cpu(), "pos_hi": self.model.pos_hi.cpu()},
            "history": self.history,
            "segments": self.segments,
        }

    def load_state(self, ckpt: dict[str, Any]) -> None:
        """Continue from a checkpoint of the same run: same model and train config, the machine
        fields (device, threads) aside."""
        diff = sorted(k for k in set(ckpt["model_config"]) | set(to_dict(self.mcfg))
                      if ckpt["model_config"].get(k) != to_dict(self.mcfg).get(k))
        mine, theirs = machine_free(to_dict(self.cfg)), machine_free(ckpt["train_config"])
        diff += sorted(f"train.{k}" for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if diff:
            raise ValueError(f"resume checkpoint was written for a different run spec "
                             f"(differs in {', '.join(diff)})")
        self.model.load_state_dict(ckpt["weights"]["surrogate"])
        self.denoiser.load_state_dict(ckpt["weights"]["denoiser"])
        self.ema.module["surrogate"].load_state_dict(ckpt["ema"]["surrogate"])
        self.ema.module["denoiser"].load_state_dict(ckpt["ema"]["denoiser"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.sampler.load_state_dict(ckpt["sampler"])
        self.step = int(ckpt["step"])
        self.tokens_seen = int(ckpt["tokens_seen"])
        self.seconds = float(ckpt["seconds"])
        self.energy_j = ckpt["energy_j"]
        # a preempted run continues; a diverged one stays diverged (the loop does not restart)
        self.status = "ok" if ckpt["status"] == "preempted" else ckpt["status"]
        self.diverged_step = int(ckpt["diverged_step"])
        self.history = {k: list(v) for k, v in ckpt["history"].items()}
        self.segments = [dict(seg) for seg in ckpt.get("segments", [])]
        _set_rng_state(ckpt["rng"], self.gen)

    def machine(self) -> dict[str, Any]:
        """Where this process trains: device, torch threads, hardware line, host."""
        import platform

        from physweep.train.telemetry import hardware_description

        try:
            hardware = hardware_description(self.device)
        except Exception:  # noqa: BLE001 - provenance is best effort
            hardware = "unknown"
        return {"device": str(self.device), "threads": int(torch.get_num_threads()),
                "hardware": hardware, "hostname": platform.node()}

    # --- the loop --------------------------------------------------------------------------
    def run(self, stop_step: int, checkpoint_out: Path, log_out: Path,
            progress_out: Path | None = None) -> dict[str, Any]:
        """Train to ``stop_step``; ``progress_out``: where to keep a progress file
        (``physweep.train.progress``: every PROGRESS_EVERY_S seconds and at the end)."""
        cfg = self.cfg
        meter = EnergyMeter(self.device)
        window = WindowedEnergy(meter, min_window_s=1.0)
        e_start = meter.read_joules()
        t0, step0 = time.perf_counter(), self.step
        segment = {**self.machine(), "from_step": self.step, "to_step": self.step}
        self.segments.append(segment)
        progress = None if progress_out is None else ProgressWriter(
            progress_out, str(self.spec.get("run", "")), stop_step, self.total_steps,
            cfg.batch_tokens, cfg.budget_tokens)
        with _Preemption() as preempt:
            while self.step < stop_step and self.status == "ok":
                row = self.train_step()
                row["energy_j"] = window.step()
                row["peak_mem_mb"] = peak_memory_mb(self.device)
                checkpoint_due = bool(cfg.checkpoint_every
                                      and self.step % cfg.checkpoint_every == 0)
                if progress is not None:
                    progress.step(self.step, row["loss"], row["step_time_s"], force=checkpoint_due)
                if not row["finite"]:
                    self.status, self.diverged_step = "diverged", self.step
                    log.error("non-finite loss or gradient at step %d: run diverged", self.step)
                last = self.step == self.total_steps
                segment["to_step"] = self.step
                if self.step % cfg.log_every == 0 or last or not row["finite"]:
                    self.record(row)
                    rate = (time.perf_counter() - t0) / max(1, self.step - step0)
                    log.info("step %d/%d loss %.4g lr %.3g horizon %d %.3fs/step ETA %.0fs",
                             self.step, self.total_steps, row["loss"], row["lr"], row["horizon"],
                             row["step_time_s"], rate * (stop_step - self.step))
                if preempt.requested and self.status == "ok":
                    self.status = "preempted"
                    break
                if checkpoint_due:
                    self.save(checkpoint_out)
        e_end = meter.read_joules()
        if self.energy_j is not None and e_start is not None and e_end is not None:
            self.energy_j += e_end - e_start
        else:
            self.energy_j = None
        self.save(checkpoint_out)
        write_netcdf(self.log_dataset(meter.source), log_out)
        if progress is not None:
            progress.finish(self.status, self.step)
        return {"status": self.status, "step": self.step, "total_steps": self.total_steps,
                "tokens_seen": self.tokens_seen, "seconds": self.seconds,
                "energy_j": self.energy_j}

    def save(self, path: Path) -> None:
        save_checkpoint(path, self.state())


def train_run(spec: dict[str, Any], data_dir: Path, checkpoint_out: Path, log_out: Path,
              stop_fraction: float = 1.0, resume_from: Path | None = None,
              threads: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) one run up to step round(stop_fraction · total_steps).

    Writes ``checkpoint_out`` (atomic) and the netCDF training log ``log_out`` (whole run so far,
    earlier steps included when resuming), both at the end; while it trains, with ``progress``,
    ``progress.json`` beside the checkpoint (``physweep.train.progress``). Returns
    {"status": "ok"|"diverged"|"preempted", "step", "total_steps", "tokens_seen", "seconds",
    "energy_j"} (energy None if not measured). ``threads`` (the job's CPU threads) overrides the
    spec's ``train.threads``; like the device it is the machine, not the run: a checkpoint
    resumes under any thread count.
    """
    from physweep.physics.dataset import load_split

    if not 0 < stop_fraction <= 1:
        raise ValueError(f"stop_fraction must be in (0, 1], got {stop_fraction}")
    cfg = from_dict(TrainConfig, spec["train"], where="run spec train")
    torch.set_num_threads(int(threads) if threads else cfg.threads)
    split = load_split(Path(data_dir) / "train.nc")
    trainer = Trainer(spec, split)
    if resume_from is not None:
        trainer.load_state(load_checkpoint(resume_from))
    stop_step = round(stop_fraction * trainer.total_steps)
    progress_out = Path(checkpoint_out).parent / PROGRESS_NAME if progress else None
    return trainer.run(stop_step, Path(checkpoint_out), Path(log_out), progress_out)
