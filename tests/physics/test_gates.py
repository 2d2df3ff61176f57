from __future__ import annotations

import math

import pytest
import torch

from physweep.physics.dataset import load_split
from physweep.physics.gates import (
    GATE_NAMES,
    check_gates,
    compute_gates,
    default_thresholds,
    grid_info,
    physics_residual,
)


@pytest.fixture(scope="module")
def splits(small_dataset):
    return {k: load_split(p) for k, p in small_dataset.items()}


def _one(splits, split="train", i=0):
    s = splits[split]
    return s.fields[i].clone(), s.mask[i], s.inflow[i], grid_info(s)


def test_ground_truth_passes_every_gate(splits):
    thr = default_thresholds()
    worst = {n: 0.0 for n in GATE_NAMES}
    for s in splits.values():
        g = grid_info(s)
        for i in range(s.n_traj):
            vals = compute_gates(s.fields[i], s.mask[i], s.inflow[i], g, truth=s.fields[i])
            for n in GATE_NAMES:
                worst[n] = max(worst[n], vals[n])
            assert all(check_gates(vals, thr).values()), (i, vals)
    print("\nground truth worst gate values:", {k: round(v, 4) for k, v in worst.items()},
          "thresholds:", thr)
    for n in GATE_NAMES:
        margin = thr[n] / max(worst[n], 1e-12) if n != "stability" else thr[n] / worst[n]
        assert margin > 1.5, f"gate {n}: truth {worst[n]:.4f} vs threshold {thr[n]} (no margin)"


def _fails(vals, name):
    return not check_gates(vals, default_thresholds())[name]


def test_no_slip_gate_fails_on_noise_in_obstacle(splits):
    f, m, inflow, g = _one(splits)
    gen = torch.Generator().manual_seed(0)
    u_ref = float(inflow.mean())
    f[:, :2] += (~m).float() * 0.5 * u_ref * torch.randn(f[:, :2].shape, generator=gen)
    vals = compute_gates(f, m, inflow, g)
    print(f"\nno_slip with obstacle noise: {vals['no_slip']:.3f}")
    assert _fails(vals, "no_slip"), vals


def test_mass_flux_gate_fails_on_flux_change(splits):
    f, m, inflow, g = _one(splits)
    w = f.shape[-1]
    f[:, 0, :, w // 2:] *= 1.3  # 30% more flux downstream
    vals = compute_gates(f, m, inflow, g)
    print(f"\nmass_flux with +30% downstream flux: {vals['mass_flux']:.3f}")
    assert _fails(vals, "mass_flux"), vals


def test_divergence_gate_fails_on_divergent_perturbation(splits):
    f, m, inflow, g = _one(splits)
    h, w = f.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                            torch.arange(w, dtype=torch.float32), indexing="ij")
    u_ref = float(inflow.mean())
    # sources/sinks: the gradient of the potential sin(2 pi x / 8) sin(2 pi y / 8)
    du = 0.3 * u_ref * torch.cos(2 * math.pi * xx / 8) * torch.sin(2 * math.pi * yy / 8)
    dv = 0.3 * u_ref * torch.sin(2 * math.pi * xx / 8) * torch.cos(2 * math.pi * yy / 8)
    f[:, 0] += du * m
    f[:, 1] += dv * m
    vals = compute_gates(f, m, inflow, g)
    print(f"\ndivergence with potential perturbation: {vals['divergence']:.3f}")
    assert _fails(vals, "divergence"), vals


def test_inflow_gate_fails_on_inlet_change(splits):
    f, m, inflow, g = _one(splits)
    f[:, 0, :, 0] *= 1.2
    vals = compute_gates(f, m, inflow, g)
    print(f"\ninflow with +20% inlet: {vals['inflow']:.3f}")
    assert _fails(vals, "inflow"), vals


def test_stability_gate_fails_on_blowup_and_nan(splits):
    f, m, inflow, g = _one(splits)
    growth = torch.linspace(1, 3, f.shape[0]).view(-1, 1, 1, 1)
    vals = compute_gates(f * growth, m, inflow, g)
    print(f"\nstability with 3x growth: {vals['stability']:.2f}")
    assert _fails(vals, "stability")
    f[-1, 0, 5, 5] = float("nan")
    vals = compute_gates(f, m, inflow, g)
    assert vals["stability"] == math.inf
    assert not any(check_gates(vals, default_thresholds()).values())
    f[-1, 0, 5, 5] = float("inf")
    assert compute_gates(f, m, inflow, g)["stability"] == math.inf


def test_check_gates_nan_false():
    thr = default_thresholds()
    vals = {n: float("nan") for n in GATE_NAMES}
    assert check_gates(vals, thr) == {n: False for n in GATE_NAMES}
    vals = {n: 0.0 for n in GATE_NAMES}
    assert all(check_gates(vals, thr).values())


def test_physics_residual_differentiable(splits):
    s = splits["train"]
    g = grid_info(s)
    x = s.fields[:, 3].clone().requires_grad_(True)
    r = physics_residual(x, s.mask, s.inflow, g)
    assert r.shape == (s.n_traj,) and torch.isfinite(r).all()
    r.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    noisy = s.fields[:, 3] + 0.2 * s.inflow.mean() * torch.randn_like(s.fields[:, 3])
    r2 = physics_residual(noisy, s.mask, s.inflow, g)
    print(f"\nphysics residual truth {r.detach().tolist()} noisy {r2.tolist()}")
    assert (r2 > 5 * r.detach()).all()


def test_physics_residual_wall_term_reads_what_the_no_slip_gate_reads(splits):
    """The ``wall`` term is the squared wall extrapolation the no_slip gate takes the RMS of: a
    field slipping along the channel walls raises it, the data's own flow keeps it small."""
    s = splits["train"]
    g = grid_info(s)
    only_wall = {"divergence": 0.0, "solid": 0.0, "wall": 1.0, "inflow": 0.0, "flux": 0.0}
    x = s.fields[:, 3].clone()
    truth = physics_residual(x, s.mask, s.inflow, g, only_wall)
    slip = x.clone()
    slip[:, 0] += s.inflow.mean()  # a uniform stream on top: velocity U at the walls
    slipping = physics_residual(slip, s.mask, s.inflow, g, only_wall)
    assert (slipping > 0.5).all() and (truth < 0.1).all()
    assert (slipping > 10 * truth).all()
