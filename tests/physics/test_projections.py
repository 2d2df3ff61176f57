from __future__ import annotations

import pytest
import torch

from physweep.physics.dataset import load_split
from physweep.physics.gates import (
    central_diff,
    column_flux,
    grid_info,
    interior_mask,
)
from physweep.physics.projections import (
    apply_boundary_conditions,
    correct_flux,
    project,
    reduce_divergence,
)


def residuals(x, mask, inflow, g):
    """(divergence RMS, solid speed RMS, inlet error RMS, flux imbalance RMS) normalised."""
    u, v = x[:, 0].double(), x[:, 1].double()
    inflow = inflow.double()
    ur = float(inflow.mean())
    inner = interior_mask(mask).double()
    d = central_diff(u, g.dx, g.dy)[0] + central_diff(v, g.dx, g.dy)[1]
    div = float(((d * g.dx / ur) ** 2 * inner).sum() / inner.sum()) ** 0.5
    solid = (~mask).double()
    sol = float(((u**2 + v**2) * solid).sum() / solid.sum().clamp_min(1)) ** 0.5 / ur
    inl = float((((u[:, :, 0] - inflow) ** 2 + v[:, :, 0] ** 2)).mean()) ** 0.5 / ur
    q = column_flux(u, mask, g.dy)
    q_in = inflow.sum(-1, keepdim=True) * g.dy
    flux = float((((q - q_in) / q_in) ** 2).mean()) ** 0.5
    return {"divergence": div, "solid": sol, "inflow": inl, "flux": flux}


@pytest.fixture(scope="module")
def noisy(small_dataset):
    s = load_split(small_dataset["train"])
    g = grid_info(s)
    x = s.fields[:, 4].double()
    gen = torch.Generator().manual_seed(1)
    noise = 0.1 * float(s.inflow.mean()) * torch.randn(x.shape, generator=gen,
                                                       dtype=torch.float64)
    return x + noise, s.mask, s.inflow.double(), g


def _check(before, after, target, tol=1.05, atol=1e-9):
    print(f"\n{target}: before {before} after {after}")
    assert after[target] < 0.7 * before[target] + atol, (target, before, after)
    for k in before:
        if k != target:
            assert after[k] <= tol * before[k] + 1e-3, (k, before, after)


def test_boundary_conditions(noisy):
    x, m, inflow, g = noisy
    b = residuals(x, m, inflow, g)
    y = apply_boundary_conditions(x, m, inflow)
    a = residuals(y, m, inflow, g)
    assert a["solid"] == 0 and a["inflow"] < 1e-12
    _check(b, a, "solid")
    assert torch.equal(apply_boundary_conditions(y, m, inflow), y)


def test_flux_correction(noisy):
    x, m, inflow, g = noisy
    x = apply_boundary_conditions(x, m, inflow)
    b = residuals(x, m, inflow, g)
    y = correct_flux(x, m, inflow, g)
    a = residuals(y, m, inflow, g)
    assert a["flux"] < 1e-10
    _check(b, a, "flux", tol=1.1)
    assert torch.allclose(correct_flux(y, m, inflow, g), y, atol=1e-12)


def test_divergence_reduction(noisy):
    x, m, inflow, g = noisy
    x = apply_boundary_conditions(x, m, inflow)
    b = residuals(x, m, inflow, g)
    prev = b["divergence"]
    for it in (5, 10, 20):
        y = reduce_divergence(x, m, g, iterations=it)
        cur = residuals(y, m, inflow, g)["divergence"]
        assert cur <= prev + 1e-12  # monotone
        prev = cur
    a = residuals(y, m, inflow, g)
    _check(b, a, "divergence", tol=1.1)


def test_project_all_and_idempotent(noisy):
    x, m, inflow, g = noisy
    b = residuals(x, m, inflow, g)
    y = project(x, m, inflow, g)
    a = residuals(y, m, inflow, g)
    print(f"\nproject: before {b} after {a}")
    assert a["solid"] == 0 and a["inflow"] < 1e-12 and a["flux"] < 1e-10
    assert a["divergence"] < 0.7 * b["divergence"]
    z = project(y, m, inflow, g)
    rel = float(torch.linalg.norm(z[:, :2] - y[:, :2]) / torch.linalg.norm(y[:, :2]))
    print(f"project twice vs once: relative change {rel:.2e}")
    assert rel < 2e-2
    # pressure untouched
    assert torch.equal(y[:, 2], x[:, 2])


def test_project_differentiable_and_float32(noisy):
    x, m, inflow, g = noisy
    x = x.float().requires_grad_(True)
    y = project(x, m, inflow.float(), g, iterations=5)
    assert y.dtype == torch.float32
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all()


def test_project_on_truth_small_change(small_dataset):
    s = load_split(small_dataset["test"])
    g = grid_info(s)
    x = s.fields[:, -1].double()
    y = project(x, s.mask, s.inflow.double(), g)
    rel = float(torch.linalg.norm(y[:, :2] - x[:, :2]) / torch.linalg.norm(x[:, :2]))
    print(f"\nprojection of ground truth changes it by {rel:.2e} (relative L2)")
    assert rel < 0.1
