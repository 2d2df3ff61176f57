"""Differentiable physics projections for predicted channel-flow fields (batched torch).

``fields`` are (B, C, H, W) with channels (u, v, p); ``mask`` (B, H, W) bool (True = fluid);
``inflow`` (B, H).  Every piece only touches the velocity channels and is differentiable, so it
can sit inside a training graph or a sampling loop.

* :func:`apply_boundary_conditions` — hard constraints by mask: u = v = 0 in obstacle cells,
  u = inflow and v = 0 on the fluid cells of the inlet column (y <- m * y_BC + (1 - m) * y).
* :func:`correct_flux` — each column's volume flux Q(x) = sum_y u dy over its fluid cells is set to
  the inflow flux by adding the uniform correction (Q_in - Q(x)) / (n_fluid(x) dy) to u on those
  cells (the mean-correction projection of a linear constraint, applied column by column).
* :func:`reduce_divergence` — ``iterations`` steepest-descent steps on 1/2 ||div u||^2 over the
  interior fluid cells: u <- u + eta G(m * div u) with central differences D for div, G for grad
  (G = -D^T, so this is exactly gradient descent and decreases the residual monotonically for
  eta <= dx^2; eta = dx^2 / 2 is used).  Only fluid cells outside the inlet column move.  It is
  the Richardson iteration of the pressure-Poisson projection u <- u - grad(phi),
  lap(phi) = div u: a few iterations remove the grid-scale (noise) divergence, the smooth part
  converges slowly.
* :func:`project` — BC -> divergence -> flux -> BC: boundary conditions and fluxes hold exactly
  afterwards, the divergence is reduced; projecting twice changes the result only by the extra
  divergence iterations (near-idempotent).
"""

from __future__ import annotations

import torch
from torch import Tensor

from physweep.physics.gates import GridInfo, central_diff, interior_mask


def _split(fields: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return fields[:, 0], fields[:, 1], fields[:, 2:]


def _join(u: Tensor, v: Tensor, rest: Tensor) -> Tensor:
    return torch.cat([u.unsqueeze(1), v.unsqueeze(1), rest], 1)


def apply_boundary_conditions(fields: Tensor, mask: Tensor, inflow: Tensor) -> Tensor:
    """Zero velocity in solids; inlet column u = inflow, v = 0 on fluid cells."""
    u, v, rest = _split(fields)
    m = mask.to(fields.dtype)
    u = u * m
    v = v * m
    inlet = torch.zeros_like(m)
    inlet[:, :, 0] = m[:, :, 0]
    u = inlet * inflow.to(fields.dtype).unsqueeze(-1) + (1 - inlet) * u
    v = (1 - inlet) * v
    return _join(u, v, rest)


def correct_flux(fields: Tensor, mask: Tensor, inflow: Tensor, grid: GridInfo) -> Tensor:
    """Set every column's volume flux to the inflow flux by a uniform shift on its fluid cells."""
    u, v, rest = _split(fields)
    m = mask.to(fields.dtype)
    q = (u * m).sum(-2) * grid.dy  # (B, W)
    q_in = inflow.to(fields.dtype).sum(-1, keepdim=True) * grid.dy  # (B, 1)
    n = m.sum(-2).clamp_min(1.0)
    du = (q_in - q) / (n * grid.dy)
    u = u + m * du.unsqueeze(-2)
    return _join(u, v, rest)


def reduce_divergence(fields: Tensor, mask: Tensor, grid: GridInfo, iterations: int = 20,
                      eta: float | None = None) -> Tensor:
    """Steepest descent on 1/2 ||div u||^2 over interior fluid cells (see module docstring)."""
    u, v, rest = _split(fields)
    inner = interior_mask(mask).to(fields.dtype)
    free = mask.to(fields.dtype).clone()
    free[:, :, 0] = 0.0
    h2 = min(grid.dx, grid.dy) ** 2
    step = 0.5 * h2 if eta is None else eta
    for _ in range(iterations):
        d = (central_diff(u, grid.dx, grid.dy)[0] + central_diff(v, grid.dx, grid.dy)[1]) * inner
        gx, gy = central_diff(d, grid.dx, grid.dy)
        # central_diff leaves the outer rows/columns at zero; include the one-sided adjoint terms
        gx = gx.clone()
        gy = gy.clone()
        gx[..., :, 0] += d[..., :, 1] / (2 * grid.dx)
        gx[..., :, -1] -= d[..., :, -2] / (2 * grid.dx)
        gy[..., 0, :] += d[..., 1, :] / (2 * grid.dy)
        gy[..., -1, :] -= d[..., -2, :] / (2 * grid.dy)
        u = u + step * free * gx
        v = v + step * free * gy
    return _join(u, v, rest)


def project(fields: Tensor, mask: Tensor, inflow: Tensor, grid: GridInfo,
            iterations: int = 20) -> Tensor:
    """BC -> divergence reduction (``iterations``) -> flux correction -> BC."""
    mask = mask.bool()
    out = apply_boundary_conditions(fields, mask, inflow)
    if iterations > 0:
        out = reduce_divergence(out, mask, grid, iterations)
    out = correct_flux(out, mask, inflow, grid)
    return apply_boundary_conditions(out, mask, inflow)
