"""Ensemble latent rollouts of a trained surrogate on grid trajectories.

Per trajectory: the start state is read at ``points`` fluid cells
(``physics.dataset.sample_points``; None = every fluid cell; use the training's
``points_per_sample`` so the encoder sees the density it was trained on), encoded once, the
predictions anchored on the stored start state on the grid (as in training), rolled out in latent
space for ``horizon`` steps with the
corrector (``model.corrector.latent_rollout``; guidance on the physics residual of the decoded
grid fields), decoded on the full grid after every step, denormalised, given the known
Dirichlet data (inlet profile, no-slip in solids; ``finish_outputs``) and blended with the
physics projection (``projection_weight`` w):

    out = bc + (1 − exp(−w)) · (project(bc) − bc),  bc = pred with the Dirichlet data imposed
    (α = 0.39, 0.63, 0.86 at w = 0.5, 1, 2)

(w = 0: the prediction with its Dirichlet data; w → ∞: the projected field). The blend acts on
the outputs only; the latent trajectory is not changed by it. Members of the ensemble are
rollouts of the same start with different corrector noise (drawn from ``generator``); without an
active corrector they are identical, so one rollout is computed and repeated.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from physweep.model.corrector import CorrectorConfig, Denoiser, latent_rollout
from physweep.model.surrogate import Surrogate
from physweep.physics.flowsplit import FlowSplit

#: grid queries decoded per chunk after a rollout (members x leads x H·W): the whole ensemble at
#: once would hold its decoder activations together -- 8 members x 32 leads on the full preset's
#: 128 x 256 grid are 8.4 M queries, ~140 GB in fp32. One chunk holds 32 full-preset grids
#: (~17 GB at model_dim 384); the demo's largest ensemble (8 x 16 on 32 x 64) stays one chunk.
DECODE_CHUNK_QUERIES = 2**20


@dataclass
class RolloutResult:
    fields: torch.Tensor  # (M, N, T, C, H, W) physical units, leads 1 … T after `start`
    s_per_step: float  # wall seconds per rollout step (one step of all M members)
    corrector_calls: int  # corrections applied, summed over trajectories


def finish_outputs(fields: torch.Tensor, mask: torch.Tensor, inflow: torch.Tensor, grid,
                     weight: float) -> torch.Tensor:
    """Impose the Dirichlet data, then fields + (1 − e^−w)·(project(fields) − fields) for
    (B, C, H, W) fields.

    The Dirichlet data are known, not predicted: the inlet column gets the trajectory's inflow
    profile (u = inflow, v = 0; the data's inlet is steady) and solid cells zero velocity
    (``projections.apply_boundary_conditions``), for every model and every projection weight --
    a surrogate's output is a prediction of the unknown interior. (Before, a trained surrogate's
    3–4 % error on the inlet column failed the inflow gate and decided round A.) The blend's
    strength then saturates towards the full projection (divergence reduction and flux
    correction) as w grows, so the playbook's weights {0.5, 1, 2} give distinct blends
    (0.39, 0.63, 0.86), none beyond the projection itself; w = 0 leaves the interior as predicted.
    """
    from physweep.physics.projections import apply_boundary_conditions, project

    fields = apply_boundary_conditions(fields, mask, inflow)
    if weight == 0:
        return fields
    a = 1.0 - math.exp(-weight)
    return fields + a * (project(fields, mask, inflow, grid) - fields)


def rollout_ensemble(model: Surrogate, denoiser: Denoiser | None, corrector: CorrectorConfig,
                     split: FlowSplit, traj: list[int], start: int, horizon: int,
                     points: int | None, generator: torch.Generator, members: int,
                     projection_weight: float, grid, device: str | torch.device = "cpu",
                     batch_members: bool = False) -> RolloutResult:
    """Roll ``members`` members of every trajectory in ``traj`` out for ``horizon`` steps.

    ``batch_members``: compute all members even when the corrector never fires (they are then
    identical; used to time a plain rollout of the same batch as a corrected ensemble).
    """
    from physweep.physics.dataset import sample_points
    from physweep.physics.gates import physics_residual

    if start + horizon >= split.n_time + 1:
        raise ValueError(f"start {start} + horizon {horizon} exceeds {split.n_time} snapshots")
    device = torch.device(device)
    from physweep.model.unet import UNet

    if isinstance(model, UNet):
        return _rollout_unet(model, split, traj, start, horizon, members, projection_weight,
                             grid, device)
    model = model.to(device).eval()
    if denoiser is not None:
        denoiser = denoiser.to(device).eval()
    c = split.fields.shape[2]
    hh, ww = split.grid_shape
    grid_pos = split.coords.reshape(1, -1, 2).to(device)  # (1, H*W, 2)
    fires = any(corrector.fires(t) for t in range(1, horizon + 1)) and denoiser is not None
    m_run = members if fires or batch_members else 1
    out, calls, seconds = [], 0, 0.0
    for i in traj:
        mask = split.mask[i].to(device)  # (H, W)
        inflow = split.inflow[i].to(device)  # (H,)
        idx = sample_points(split.mask[i], points, generator)  # (P,)
        t0 = time.perf_counter()
        with torch.no_grad():
            pos = split.coords.reshape(-1, 2)[idx][None].to(device)  # (1, P, 2)
            vals = split.fields[i, start].reshape(c, -1)[:, idx].T[None].to(device)  # (1, P, C)
            nvals = model.normalize(vals)
            # base: (1, H*W, C) the stored start state on the grid -- the anchor the trainer
            # uses too (the interpolated input would add its interpolation error to every
            # prediction when ``points`` is sparse, and put flow inside the obstacles)
            grid_state = split.fields[i, start].reshape(c, -1).T[None].to(device)  # (1, H*W, C)
            z0, base, context = model.start(pos, nvals, grid_pos,
                                            anchor=model.normalize(grid_state))
            z0 = z0.expand(m_run, -1, -1)  # (M, L, D)

        def residual_fn(z: torch.Tensor, mask=mask, inflow=inflow, base=base,
                        context=context) -> torch.Tensor:
            m = z.shape[0]
            f = model.predict(z, base.expand(m, -1, -1), grid_pos.expand(m, -1, -1),
                              context.expand(m, -1, -1))  # (M, H*W, C)
            f = model.denormalize(f).transpose(1, 2).reshape(m, c, hh, ww)
            return physics_residual(f, mask.expand(m, -1, -1), inflow.expand(m, -1), grid)

        res = latent_rollout(model, z0, horizon, corrector, denoiser, generator, residual_fn)
        calls += res.corrector_calls
        with torch.no_grad():
            parts = []
            chunk = max(1, DECODE_CHUNK_QUERIES // (hh * ww))
            for zc in res.latents.flatten(0, 1).split(chunk):  # (<= chunk, L, D) of M*T
                n = zc.shape[0]
                f = model.predict(zc, base.expand(n, -1, -1), grid_pos.expand(n, -1, -1),
                                  context.expand(n, -1, -1))  # (n, H*W, C)
                f = model.denormalize(f).transpose(1, 2).reshape(-1, c, hh, ww)  # (n, C, H, W)
                parts.append(finish_outputs(f, mask.expand(n, -1, -1), inflow.expand(n, -1),
                                              grid, projection_weight))
            f = torch.cat(parts) if len(parts) > 1 else parts[0]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds += time.perf_counter() - t0
        f = f.reshape(m_run, horizon, c, hh, ww).float().cpu()
        out.append(f.expand(members, -1, -1, -1, -1) if m_run == 1 else f)
    fields = torch.stack(out, dim=1)  # (M, N, T, C, H, W)
    return RolloutResult(fields, seconds / max(1, len(traj) * horizon), calls)


def _rollout_unet(model, split: FlowSplit, traj: list[int], start: int, horizon: int,
                  members: int, projection_weight: float, grid, device: torch.device
                  ) -> RolloutResult:
    """The reference U-Net's grid rollout from the stored state at ``start`` (deterministic:
    every member is the same rollout; it reads the full grid, so ``points`` does not apply)."""
    model = model.to(device).eval()
    c = split.fields.shape[2]
    hh, ww = split.grid_shape
    coords = split.coords.to(device)
    out, seconds = [], 0.0
    for i in traj:
        mask = split.mask[i].to(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            state = model.normalize(split.fields[i, start].to(device), dim=0)[None]  # (1,C,H,W)
            f = model.rollout_grid(state, mask[None], coords, horizon)[0]  # (T, C, H, W)
            f = model.denormalize(f, dim=1)
            f = finish_outputs(f, mask.expand(horizon, -1, -1),
                                 split.inflow[i].to(device).expand(horizon, -1), grid,
                                 projection_weight)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds += time.perf_counter() - t0
        out.append(f.reshape(1, horizon, c, hh, ww).float().cpu().expand(members, -1, -1, -1, -1))
    fields = torch.stack(out, dim=1)  # (M, N, T, C, H, W)
    return RolloutResult(fields, seconds / max(1, len(traj) * horizon), 0)
