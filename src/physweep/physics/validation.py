"""Schäfer–Turek cylinder benchmarks (DFG 2D-1, 2D-2) on the D2Q9 solver.

Geometry (physical): channel [0, 2.2] x [0, 0.41], cylinder centre (0.2, 0.2), D = 0.1, parabolic
inflow with mean 1.0 (2D-2, Re = 100) or 0.2 (2D-1, Re = 20); rho = 1; the cylinder is a staircase
(half-way bounce-back).  ``resolution`` = cells per diameter D; the lattice is 4.1 D x 22 D.
Reference intervals: 2D-2 St in [0.295, 0.305], c_D,max in [3.22, 3.24], c_L,max in [0.99, 1.01];
2D-1 c_D = 5.5795.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from physweep.physics.lbm import LBMSolver, disk_mask, drag_lift_coefficients, parabolic_profile
from physweep.physics.lbm import strouhal as _strouhal


@dataclass
class CylinderResult:
    resolution: int
    reynolds: float
    steps: int
    runtime_s: float
    strouhal: float
    cd_max: float
    cl_max: float
    cd_mean: float
    cl_mean: float
    mass_rel_change: float


def schafer_turek(resolution: int = 20, reynolds: float = 100.0, *, u_mean: float = 0.1,
                  spinup_convective: float = 40.0, measure_convective: float = 20.0,
                  compile: bool = False, dtype: torch.dtype = torch.float64,
                  incompressible: bool = False, outlet: str = "fixed") -> CylinderResult:
    """Run the cylinder case; times are in convective units D / U_mean."""
    d = resolution
    ny, nx = round(4.1 * d), 22 * d
    solid = disk_mask(ny, nx, 2.0 * d, 2.0 * d, 0.5 * d)
    nu = u_mean * d / reynolds
    tau = 3.0 * nu + 0.5
    inflow = parabolic_profile(ny, u_mean, dtype=dtype)
    s = LBMSolver(solid, tau, inflow, x_mode="open", dtype=dtype, compile=compile,
                  incompressible=incompressible, outlet=outlet)
    x = torch.arange(nx, dtype=dtype).view(1, -1) + 0.5
    y = torch.arange(ny, dtype=dtype).view(-1, 1) + 0.5
    ux = inflow.view(ny, 1).expand(ny, nx)
    # small transverse kick behind the cylinder breaks the symmetry and shortens the spin-up
    uy = 0.05 * u_mean * torch.exp(-((x - 3.0 * d) ** 2 + (y - 2.0 * d) ** 2) / d**2)
    s.initialize(ux=ux.unsqueeze(0), uy=uy.unsqueeze(0))
    t_conv = d / u_mean
    n_spin = int(spinup_convective * t_conv)
    n_meas = int(measure_convective * t_conv)
    m0 = float(s.fluid_mass()[0])
    t0 = time.perf_counter()
    s.step(n_spin)
    forces = s.step(n_meas, track_force=True)[:, 0]
    runtime = time.perf_counter() - t0
    coef = drag_lift_coefficients(forces, u_mean, d)
    cd, cl = coef[:, 0], coef[:, 1]
    st = _strouhal(cl.numpy(), dt=1.0) * d / u_mean if reynolds > 50 else float("nan")
    return CylinderResult(resolution=d, reynolds=reynolds, steps=n_spin + n_meas,
                          runtime_s=runtime, strouhal=st, cd_max=float(cd.max()),
                          cl_max=float(cl.max()), cd_mean=float(cd.mean()),
                          cl_mean=float(cl.mean()),
                          mass_rel_change=float(s.fluid_mass()[0]) / m0 - 1.0)
