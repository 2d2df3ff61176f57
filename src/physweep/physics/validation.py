"""Schäfer–Turek cylinder benchmarks (DFG 2D-1, 2D-2) on the D2Q9 solver.

Geometry (physical): channel [0, 2.2] x [0, 0.41], cylinder centre (0.2, 0.2), D = 0.1, parabolic
inflow with maximum 1.5 (2D-2, mean 1.0, Re = 100) or 0.3 (2D-1, mean 0.2, Re = 20); rho = 1; no-slip
channel walls (half-way bounce-back: the walls lie exactly at y = 0 and 4.1 D), do-nothing-like
outlet (non-equilibrium extrapolation).  ``resolution`` = cells per diameter D; the lattice is
4.1 D x 22 D.  By default the cylinder is curved (interpolated Bouzidi bounce-back with the exact
wall fractions q, momentum-exchange force consistent with it); ``boundary="staircase"`` gives the
old half-way bounce-back disk.  The lattice inflow maximum is ``u_max`` (default 0.1, Mach 0.17).

Time stepping: an impulsive start from the inflow profile plus a small transverse kick, spin-up in
blocks of ~1.5 shedding periods until the lift amplitude and peak drag change by less than
``saturation_tol`` between blocks (at least ``spinup_convective``, at most ``max_spinup_convective``
convective times D / U_mean), then c_D,max, c_L,max and St (from the mean crossings of c_L) over
``measure_convective`` convective times (several periods).

Reference intervals: 2D-2 St in [0.295, 0.305], c_D,max in [3.22, 3.24], c_L,max in [0.99, 1.01];
2D-1 c_D = 5.5795.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from physweep.physics.lbm import (
    LBMSolver,
    disk_link_fractions,
    disk_mask,
    drag_lift_coefficients,
    parabolic_profile,
)
from physweep.physics.lbm import strouhal as _strouhal

ST_REF = (0.295, 0.305)
CD_MAX_REF = (3.22, 3.24)
CL_MAX_REF = (0.99, 1.01)
CD_2D1_REF = 5.5795


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
    spinup_steps: int = 0
    periods: float = float("nan")  # shedding periods inside the measurement window
    boundary: str = "curved"
    u_max: float = float("nan")  # lattice inflow maximum
    spinup_history: list | None = None  # (step, peak c_D or mean c_D, c_L amplitude) per block
    fields: tuple | None = None  # final (rho, ux, uy), (NY, NX) float64, lattice units


def crossing_frequency(signal: np.ndarray, dt: float = 1.0) -> float:
    """Frequency from the upward mean crossings of a periodic signal (linear interpolation).

    Accurate to ~1e-4 over a few periods where an FFT peak is limited by the window length.
    Falls back to the FFT estimate with fewer than two full periods.
    """
    s = np.asarray(signal, dtype=np.float64)
    s = s - 0.5 * (s.max() + s.min())
    up = np.nonzero((s[:-1] < 0) & (s[1:] >= 0))[0]
    if len(up) < 3:
        return _strouhal(s, dt=dt)
    t = up + s[up] / (s[up] - s[up + 1])
    return float((len(t) - 1) / ((t[-1] - t[0]) * dt))


def schafer_turek(resolution: int = 20, reynolds: float = 100.0, *, u_max: float = 0.1,
                  u_mean: float | None = None, boundary: str = "curved",
                  spinup_convective: float = 20.0, max_spinup_convective: float = 80.0,
                  saturation_tol: float = 2e-3, measure_convective: float = 12.0,
                  compile: bool = False, dtype: torch.dtype = torch.float64,
                  incompressible: bool = True, outlet: str = "characteristic",
                  init_from: CylinderResult | None = None,
                  keep_fields: bool = False) -> CylinderResult:
    """Run the cylinder case; times are in convective units D / U_mean.

    ``u_mean`` (lattice) overrides ``u_max`` (= 1.5 u_mean).  For Re <= 50 (steady 2D-1) the
    saturation test is on the mean drag alone and St is NaN.  Defaults are the dataset's solver
    settings (He–Luo incompressible equilibrium, characteristic outlet): with the rho = 1 outlet
    the impulsive start leaves an acoustic transient in the channel that decays over tens of
    thousands of steps and keeps the peak drag high (+4% at D = 20 after 48k steps).

    ``init_from``: grid sequencing.  Start from the final fields of a run at another resolution
    (same ``u_max``, so lattice velocities and densities carry over), bilinearly interpolated,
    instead of the impulsive start; the saturation test still decides when measuring starts.
    ``keep_fields`` stores the final fields in the result for that purpose.
    """
    if boundary not in ("curved", "staircase"):
        raise ValueError(f"boundary must be 'curved' or 'staircase', got {boundary!r}")
    d = resolution
    u_mean = u_max / 1.5 if u_mean is None else u_mean
    ny, nx = round(4.1 * d), 22 * d
    cx = cy = 2.0 * d
    solid = disk_mask(ny, nx, cx, cy, 0.5 * d)
    wall_q = disk_link_fractions(ny, nx, cx, cy, 0.5 * d, solid) if boundary == "curved" else None
    nu = u_mean * d / reynolds
    tau = 3.0 * nu + 0.5
    inflow = parabolic_profile(ny, u_mean, dtype=dtype)
    s = LBMSolver(solid, tau, inflow, x_mode="open", dtype=dtype, compile=compile,
                  incompressible=incompressible, outlet=outlet, wall_q=wall_q)
    x = torch.arange(nx, dtype=dtype).view(1, -1) + 0.5
    y = torch.arange(ny, dtype=dtype).view(-1, 1) + 0.5
    ux = inflow.view(ny, 1).expand(ny, nx)
    # small transverse kick behind the cylinder breaks the symmetry and shortens the spin-up
    uy = 0.05 * u_mean * torch.exp(-((x - 3.0 * d) ** 2 + (y - 2.0 * d) ** 2) / d**2)
    if init_from is not None and init_from.fields is not None:
        rho0, ux0, uy0 = (torch.nn.functional.interpolate(
            f.to(dtype).view(1, 1, *f.shape[-2:]), size=(ny, nx), mode="bilinear",
            align_corners=False)[0] for f in init_from.fields)
        s.initialize(ux=ux0, uy=uy0, rho=rho0)
    else:
        s.initialize(ux=ux.unsqueeze(0), uy=uy.unsqueeze(0))
    t_conv = d / u_mean
    unsteady = reynolds > 50
    block = max(1, int((5.0 if unsteady else 2.0) * t_conv))
    n_min = int(spinup_convective * t_conv)
    n_max = max(n_min, int(max_spinup_convective * t_conv))
    n_meas = int(measure_convective * t_conv)
    m0 = float(s.fluid_mass()[0])
    t0 = time.perf_counter()
    s.step(max(0, n_min - 2 * block))
    prev = None
    history = []
    while True:
        coef = drag_lift_coefficients(s.step(block, track_force=True)[:, 0], u_mean, d)
        cd, cl = coef[:, 0], coef[:, 1]
        if not bool(torch.isfinite(coef).all()):
            raise RuntimeError(f"solver diverged during spin-up (D = {d}, Re = {reynolds})")
        if unsteady:
            feat = np.array([float(cd.max()), float(cl.max() - cl.min())])
            history.append((s.time, float(feat[0]), float(feat[1])))
            done = s.time >= n_min and prev is not None and (
                abs(feat[0] - prev[0]) <= saturation_tol * abs(feat[0])
                and abs(feat[1] - prev[1]) <= saturation_tol * max(abs(feat[1]), 1e-3))
        else:  # steady: mean drag settled to 0.1 * saturation_tol
            feat = np.array([float(cd.mean()), float(cd.max() - cd.min())])
            history.append((s.time, float(feat[0]), float(feat[1])))
            done = s.time >= n_min and prev is not None and (
                abs(feat[0] - prev[0]) <= 0.1 * saturation_tol * abs(feat[0]))
        if done or s.time >= n_max:
            break
        prev = feat
    n_spin = s.time
    forces = s.step(n_meas, track_force=True)[:, 0]
    runtime = time.perf_counter() - t0
    coef = drag_lift_coefficients(forces, u_mean, d)
    cd, cl = coef[:, 0].numpy(), coef[:, 1].numpy()
    if unsteady:
        f = crossing_frequency(cl)
        st, periods = f * t_conv, f * n_meas
    else:
        st, periods = float("nan"), float("nan")
    return CylinderResult(resolution=d, reynolds=reynolds, steps=n_spin + n_meas,
                          runtime_s=runtime, strouhal=float(st), cd_max=float(cd.max()),
                          cl_max=float(cl.max()), cd_mean=float(cd.mean()),
                          cl_mean=float(cl.mean()),
                          mass_rel_change=float(s.fluid_mass()[0]) / m0 - 1.0,
                          spinup_steps=n_spin, periods=float(periods), boundary=boundary,
                          u_max=1.5 * u_mean, spinup_history=history,
                          fields=tuple(f[0].clone() for f in s.macroscopic()) if keep_fields
                          else None)


def within(value: float, interval: tuple[float, float]) -> bool:
    return interval[0] <= value <= interval[1] and not math.isnan(value)
