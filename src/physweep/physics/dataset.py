"""Channel-flow datasets around random obstacles, generated with the batched D2Q9 solver.

Setup (physical units): a channel of height ``height_m`` (0.41 m as in Schäfer–Turek) and length
``height_m * nx / ny``, parabolic inflow on the left (mean 0.6–0.8 m/s drawn per trajectory),
a non-reflecting outflow on the right, no-slip walls top and bottom and on the obstacles.
The solver lattice is ``refine`` x the stored grid (demo: 64 x 128 for the stored 32 x 64);
dx = height_m / (ny * refine), dt = U_LAT_REF * dx / U_REF, so 1 m/s is 0.04 lattice units and
the mean inflow 0.024–0.032.  Stored fields are the lattice fields at the stored cell centres
(bilinear; for refine 2 the mean of each 2 x 2 block), except that the first column holds the
lattice's inlet nodes (the velocity boundary, as with refine 1); cells whose centre lies in an
obstacle hold the wall state u = v = p = 0.

Solver settings (see :mod:`physweep.physics.lbm`; the file's ``solver`` attribute is written by
:func:`solver_description` from the config): D2Q9 BGK with the He–Luo incompressible equilibrium
(the stored velocity is the momentum, so steady fluxes are conserved exactly), curved obstacles by
linear interpolated (Bouzidi) bounce-back with exact wall fractions of the analytic shapes,
half-way bounce-back channel walls, a non-equilibrium bounce-back velocity inlet and a
characteristic (plane-wave non-reflecting) rho-outlet.  float32 stepping (float64 changed the
stored fields by < 0.4 % rms and St by < 0.03 %; the outlet pins the density, so nothing drifts),
``torch.compile``d (one graph for every geometry; eager if compiling fails).

Start-up: from rest, the inflow ramps up as sin^2 over ``ramp_steps``, then a transverse kick
(``kick`` x U around the obstacles) breaks the symmetry; shedding saturates within the spin-up.
An impulsive start (flow initialised to the inflow profile around the obstacles) sends an
acoustic transient through the gaps that raised the local speed to 3.4–3.7 U, against 2.2–3.4 U
in the developed flow.

Mach number: max over the lattice and every probe time of |u| / c_s, c_s = 1/sqrt(3), is stored
per trajectory (``mach_max``).  The fastest fluid is in the gaps next to and between obstacles,
up to 3.4 x the mean inflow, so the mean lattice inflow is kept <= 0.032 (``u_lat_max``); on the
demo config max Mach is 0.10–0.18.  (The former 0.06–0.09 and impulsive start reached
0.25–0.51.)

Reynolds number Re = u_mean * D / nu with D the exact cross-stream extent of the largest obstacle
(every shape is scaled so that its extent is the drawn blockage D / H = 0.25–0.35), drawn
uniformly in its Re band; nu_lattice = u_lat * D_lattice / Re and tau = 1/2 + 3 nu (0.508–0.520
on the demo lattice, stable at these Mach numbers).  If tau would fall below ``tau_min`` the inflow
of that trajectory is raised (never above ``u_lat_max``), so Re stays exact.  All draws are made
on the stored grid: the same config with another ``refine`` describes the same flows.

Resolution (measured, St of the same flows on a 2x refined lattice with steps doubled):
64 x 128 (D ~ 16–22 cells) is within 0.1–2.1 % for 9 periodic in-distribution flows, 0.3–1.2 %
for three ood ones and 3.4 % for one triangle (sharp corners); a 32 x 64 lattice was 3–5 % low for
smooth bodies and a 48 x 96 lattice up to 10 % off for rotated squares at Re > 120.  The slow
test ``test_strouhal_converged_against_refined_lattice`` checks three draws (< 2 minutes).

Regimes.  A trajectory's label says what its flow does in the stored record, measured from the
transverse velocity in a wake window (``WAKE_X``) sampled 8x per snapshot
(:func:`flow_measures`, :func:`classify`): ``steady`` (nothing moves), ``transient`` (amplitude
growing or decaying, a drifting mean, or no resolved oscillation), ``periodic`` (a limit cycle:
correlation one period later >= 0.98) or ``irregular`` (modulated, quasi-periodic or chaotic
shedding).  Stored per trajectory: ``strouhal`` St = f D / u_mean, ``amplitude`` std(v) / u_mean,
``periodicity``, ``envelope``, ``drift``, ``spectral_concentration``.  ``regime_names`` is always
``REGIME_LABELS`` (a label may be absent from a split; the trainer's sampler masks absent ones);
``re_band`` keeps the Re band a draw came from.

The former low-Re "steady" band (Re 10–40) is dropped, not kept as an impulsive-start transient:
recorded from the impulsive start, those wakes settle within half the record (persistence error of
the fields at lead 4, 32 x 64: 0.79 from snapshot 0, 0.05 from snapshot 24, 0.01 from 40 of 56),
so most evaluation start phases would again have nothing to predict; Re 40–60 shedding decayed the
same way.  Every trajectory now draws Re in [100, 170], where every single body sheds.  Some
obstacle pairs and triples (tandem or staggered) suppress shedding even there; a draw whose wake
amplitude over the record (>= 10 convective times) stays below ``min_amplitude`` (0.05) is
re-drawn in its band (new geometry, Re and inflow; up to ``max_redraws`` rounds, then kept with a
warning), so decaying shedding remains as ``transient`` only while it is clearly visible.

Records: ``spinup_steps`` (2.8 flow-throughs at the mean inflow, containing the ramp) are not
stored; then ``n_snapshots`` = 56 snapshots every 160 steps.  A shedding period is 11–21
snapshots (median ~13), so the record holds about four periods and an evaluation may start at
any of the first ~35 snapshots and still cover a full period.

Splits: ``train`` and ``test`` draw 1 or 2 obstacles among circle / square / ellipse (random
position, size and angle; different seeds), ``ood`` uses geometries never seen in training:
triangles (1–2) or three in-distribution obstacles.  The same config gives the same data.

netCDF layout: dims (traj, time, y, x); u, v (m/s), p (m2 s-2, kinematic pressure p/rho relative
to the outlet), mask(traj, y, x) int8 1 = fluid, inflow(traj, y) m/s, regime(traj) str,
re_band(traj) str, geometry(traj) str, reynolds(traj), diameter(traj) m, tau(traj), and the
measures strouhal, amplitude, periodicity, envelope, drift, spectral_concentration,
mach_max (traj); coords x, y (m, cell centres), time (s, 0 at the first snapshot).
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from physweep.io import provenance, write_netcdf
from physweep.physics.dataset_config import (  # noqa: F401  (re-exported)
    ID_SHAPES,
    REGIME_LABELS,
    SPLITS,
    U_LAT_REF,
    U_REF,
    DatasetConfig,
    full_config,
)
from physweep.physics.flowsplit import CHANNELS, FlowSplit
from physweep.physics.lbm import CS2, LBMSolver, parabolic_profile, sdf_link_fractions

#: Wake window in which St, amplitude and periodicity are measured: stored columns
#: [WAKE_X[0] nx, WAKE_X[1] nx); obstacles end at least one cell before it.
WAKE_X = (0.7, 0.95)


# --------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Shape:
    """One obstacle in stored-grid cell units (cell j spans [j, j + 1))."""

    kind: str
    cx: float
    cy: float
    size: float  # circumradius-like half extent
    angle: float
    aspect: float

    def level(self, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """Implicit function, <= 0 inside (a signed distance for circle / square / triangle)."""
        dx, dy = torch.broadcast_tensors(xs - self.cx, ys - self.cy)
        ca, sa = math.cos(self.angle), math.sin(self.angle)
        xr_, yr_ = ca * dx + sa * dy, -sa * dx + ca * dy
        if self.kind == "circle":
            return torch.sqrt(dx * dx + dy * dy) - self.size
        if self.kind == "square":
            return torch.maximum(xr_.abs(), yr_.abs()) - self.size / math.sqrt(2.0) * 1.15
        if self.kind == "ellipse":
            a, b = self.size, self.size * self.aspect
            return (xr_ / a) ** 2 + (yr_ / b) ** 2 - 1.0
        if self.kind == "triangle":
            th = [self.angle + 2 * math.pi * k / 3 for k in range(3)]
            faces = [math.cos(t) * dx + math.sin(t) * dy for t in th]
            return torch.maximum(torch.maximum(faces[0], faces[1]), faces[2]) - 0.5 * self.size
        raise ValueError(f"unknown shape {self.kind!r}")

    def extent_y(self) -> float:
        """Exact cross-stream extent (stored cells) of the shape."""
        ca, sa = abs(math.cos(self.angle)), abs(math.sin(self.angle))
        if self.kind == "circle":
            return 2.0 * self.size
        if self.kind == "square":
            return 2.0 * self.size / math.sqrt(2.0) * 1.15 * (ca + sa)
        if self.kind == "ellipse":
            a, b = self.size, self.size * self.aspect
            return 2.0 * math.sqrt(a * a * sa * sa + b * b * ca * ca)
        if self.kind == "triangle":  # vertices at -size * (cos th_k, sin th_k)
            ys = [-self.size * math.sin(self.angle + 2 * math.pi * k / 3) for k in range(3)]
            return max(ys) - min(ys)
        raise ValueError(f"unknown shape {self.kind!r}")


def _nodes(n: int, refine: float, dtype=torch.float64) -> torch.Tensor:
    """Solver-node centres of ``n * refine`` nodes in stored-cell units."""
    return (torch.arange(round(n * refine), dtype=dtype) + 0.5) / refine


def _level(shapes: list[Shape], xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    lv = shapes[0].level(xs, ys)
    for sh in shapes[1:]:
        lv = torch.minimum(lv, sh.level(xs, ys))
    return lv


def rasterize(shapes: list[Shape], ny: int, nx: int, refine: float = 1) -> torch.Tensor:
    """Solid mask (ny * refine, nx * refine) of the obstacles on the solver lattice."""
    return _level(shapes, _nodes(nx, refine).view(1, -1), _nodes(ny, refine).view(-1, 1)) <= 0


def _wall_fractions(shapes: list[Shape], solid: torch.Tensor, refine: float) -> torch.Tensor:
    """Exact wall fractions q (9, NY, NX) of the obstacle links (Bouzidi bounce-back)."""
    return sdf_link_fractions(lambda x, y: _level(shapes, x / refine, y / refine), solid)


def _sample_geometry(split: str, ny: int, nx: int, blockage: tuple[float, float],
                     g: torch.Generator, max_blockage: float = 0.4
                     ) -> tuple[list[Shape], str, float]:
    """Draw the obstacles of one trajectory on the stored grid (ny, nx).

    Every shape is scaled so that its exact cross-stream extent is the drawn blockage x ny;
    returns (shapes, label, D) with D the extent of the largest obstacle in stored cells.
    Placement rules (in stored cells, so a refined solver lattice sees the same geometry):
    >= 3 cells to the walls, >= 3 to the inlet, ending a cell before the wake window
    (``WAKE_X``), >= 2 cells between obstacles, no column more than ``max_blockage`` covered.
    """
    def u(a: float, b: float) -> float:
        return a + (b - a) * float(torch.rand((), generator=g))

    ys = _nodes(ny, 1).view(-1, 1)
    xs = _nodes(nx, 1).view(1, -1)
    h = float(ny)
    if split == "ood":
        if float(torch.rand((), generator=g)) < 0.5:
            kinds = ["triangle"] * (1 + int(torch.randint(2, (1,), generator=g)))
        else:
            kinds = [ID_SHAPES[int(torch.randint(3, (1,), generator=g))] for _ in range(3)]
    else:
        n = 1 + int(torch.randint(2, (1,), generator=g))
        kinds = [ID_SHAPES[int(torch.randint(3, (1,), generator=g))] for _ in range(n)]
    for _attempt in range(2000):
        solid = torch.zeros(ny, nx, dtype=torch.bool)
        shapes: list[Shape] = []
        ok = True
        for j, kind in enumerate(kinds):
            scale = 1.0 if j == 0 else u(0.6, 1.0)
            d = u(*blockage) * h * scale
            cx = u(0.2, 0.35) * nx if j == 0 else u(0.2, 0.55) * nx
            cy = u(0.3, 0.7) * h
            sh = Shape(kind, cx, cy, 0.5 * d, u(0.0, math.pi), u(0.5, 0.8))
            # scale the shape so that its cross-stream extent is the drawn d
            sh = dataclasses.replace(sh, size=sh.size * d / sh.extent_y())
            m = sh.level(xs, ys) <= 0
            rows = m.any(1).nonzero()
            cols = m.any(0).nonzero()
            if len(rows) == 0:
                ok = False
                break
            if (rows.min() < 3 or rows.max() > ny - 4 or cols.min() < 3
                    or cols.max() >= WAKE_X[0] * nx - 1):
                ok = False
                break
            grown = torch.nn.functional.max_pool2d(solid[None, None].float(), 5, 1, 2)[0, 0] > 0
            if (grown & m).any():
                ok = False
                break
            solid |= m
            shapes.append(sh)
        # total blockage of any column <= max_blockage (side-by-side obstacles would choke the
        # channel and push the local Mach number far beyond the inflow's)
        if ok and float(solid.sum(0).max()) > max_blockage * ny:
            ok = False
        if ok:
            break
    else:  # pragma: no cover - the ranges above always leave room
        raise RuntimeError("could not place obstacles")
    return shapes, "+".join(kinds), max(sh.extent_y() for sh in shapes)


def _down(a: torch.Tensor, refine: float) -> torch.Tensor:
    """Lattice fields (..., NY, NX) at the stored cell centres (bilinear interpolation).

    refine 1: the lattice itself; 2: the mean of each 2 x 2 block (the centre lies between four
    nodes); 3: the centre node; 1.5: weights 3/4, 1/4 per axis.  (An area average of node values
    with a non-integer ratio leaves an alternating +-O(dx du/dy) pattern between stored rows.)"""
    if refine == 1:
        return a
    ny, nx = a.shape[-2:]
    x = torch.nn.functional.interpolate(a.reshape(-1, 1, ny, nx), mode="bilinear",
                                        size=(round(ny / refine), round(nx / refine)),
                                        align_corners=False)
    return x.reshape(*a.shape[:-2], *x.shape[-2:])


def _stored(a: torch.Tensor, refine: float) -> torch.Tensor:
    """Stored-grid field: :func:`_down`, except that the first column holds the lattice's inlet
    column (the velocity boundary, as with refine 1; its centre is dx (1 - 1/refine) / 2 closer
    to the inlet than the column's nominal one).  The cell-centre value there would mix in the
    next lattice column, whose transverse velocity the inlet does not control (it read
    ||v|| / ||u_in|| ~ 0.03 against ~0.005 on the inlet nodes)."""
    out = _down(a, refine)
    if refine != 1:
        out[..., 0] = _down1(a[..., 0], refine)
    return out


def _down1(a: torch.Tensor, refine: float) -> torch.Tensor:
    """Profiles (..., NY) at the stored row centres (linear interpolation)."""
    if refine == 1:
        return a
    x = torch.nn.functional.interpolate(a.reshape(-1, 1, a.shape[-1]), mode="linear",
                                        size=round(a.shape[-1] / refine), align_corners=False)
    return x.reshape(*a.shape[:-1], -1)


def _resolve_device(dev: str) -> torch.device:
    if dev == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(dev)


def _plan_one(cfg: DatasetConfig, split: str, band: str, g: torch.Generator) -> dict:
    lo, hi = cfg.regimes[band]
    re = lo + (hi - lo) * float(torch.rand((), generator=g))
    shapes, label, d = _sample_geometry(split, cfg.ny, cfg.nx, cfg.blockage_range, g,
                                        cfg.max_blockage)
    u_lo, u_hi = cfg.u_mean_range
    u_phys = u_lo + (u_hi - u_lo) * float(torch.rand((), generator=g))
    u_lat = u_phys * U_LAT_REF / U_REF
    d_lat = d * cfg.refine
    nu_min = (cfg.tau_min - 0.5) / 3.0
    u_lat = min(max(u_lat, nu_min * re / d_lat), cfg.u_lat_max)
    tau = 0.5 + 3.0 * u_lat * d_lat / re
    if tau < 0.5 + 0.5 * (cfg.tau_min - 0.5):
        raise ValueError(f"Re={re:.0f} with D={d_lat:.1f} cells needs tau={tau:.4f}: refine "
                         "the lattice or lower the Re band")
    sign = 1.0 if float(torch.rand((), generator=g)) < 0.5 else -1.0
    return {"band": band, "re": re, "shapes": shapes, "geometry": label, "d": d,
            "u_lat": u_lat, "tau": tau, "kick_sign": sign}


def _plan_split(cfg: DatasetConfig, split: str, n: int) -> list[dict]:
    """Per-trajectory physical setup; every draw is made on the stored grid, so the same config
    with another ``refine`` describes the same flows (only ``tau`` follows the lattice)."""
    g = torch.Generator().manual_seed(cfg.seed * 1000 + SPLITS.index(split) + 1)
    names = list(cfg.regimes)
    order = torch.randperm(n, generator=g).tolist()
    return [_plan_one(cfg, split, names[order[i] % len(names)], g) for i in range(n)]


def _redraw(cfg: DatasetConfig, split: str, bands: list[str], attempt: int) -> list[dict]:
    """Replacement draws (same Re bands) for trajectories without sustained dynamics."""
    g = torch.Generator().manual_seed(
        cfg.seed * 1000 + SPLITS.index(split) + 1 + 100 * attempt)
    return [_plan_one(cfg, split, band, g) for band in bands]


def _probe_every(cfg: DatasetConfig) -> int:
    """Solver steps between wake-probe samples: ~8 per snapshot interval."""
    return max(1, cfg.snapshot_every // 8)


def _solver(cfg: DatasetConfig, chunk: list[dict], r: float, device: torch.device,
            dtype: torch.dtype) -> tuple[LBMSolver, torch.Tensor]:
    """Solver for ``chunk`` on the lattice ``r`` x the stored grid, and its inflow profiles."""
    ny = round(cfg.ny * r)
    solid = torch.stack([rasterize(p["shapes"], cfg.ny, cfg.nx, r) for p in chunk])
    wall_q = None
    if cfg.obstacle_boundary == "curved":
        wall_q = torch.stack([_wall_fractions(p["shapes"], solid[i], r)
                              for i, p in enumerate(chunk)]).to(device)
    u_lat = torch.tensor([p["u_lat"] for p in chunk], dtype=dtype)
    inflow = parabolic_profile(ny, u_lat, dtype=dtype, device=device)
    # nu_lattice = u_lat D_lattice / Re on this lattice (acoustic scaling: u_lat is shared)
    tau = torch.tensor([0.5 + 3.0 * p["u_lat"] * p["d"] * r / p["re"] for p in chunk],
                       dtype=dtype, device=device)
    s = LBMSolver(solid.to(device), tau, inflow, x_mode="open", dtype=dtype, device=device,
                  compile=cfg.compile, sponge=round(cfg.sponge * r),
                  incompressible=cfg.incompressible, outlet=cfg.outlet, wall_q=wall_q)
    return s, inflow


def _kick_field(cfg: DatasetConfig, chunk: list[dict], s: LBMSolver) -> torch.Tensor:
    b, ny, nx = s.shape
    dtype, device = s.dtype, s.device
    ys = (torch.arange(ny, dtype=dtype, device=device) + 0.5) / ny
    xs = (torch.arange(nx, dtype=dtype, device=device) + 0.5) / nx
    amp = torch.tensor([cfg.kick * p["kick_sign"] * p["u_lat"] for p in chunk], dtype=dtype,
                       device=device)
    return (amp.view(-1, 1, 1) * torch.sin(math.pi * ys).view(1, -1, 1)
            * torch.exp(-(((xs - 0.35) / 0.15) ** 2)).view(1, 1, -1))


def _run(s: LBMSolver, inflow: torch.Tensor, kick: torch.Tensor, ramp: int,
         events: list[int], on_event, bar) -> None:
    """Advance ``s`` to ``events[-1]``; sin^2 inflow ramp over ``ramp`` steps from rest with the
    kick when it completes (``ramp`` = 0: the caller initialised the state); ``on_event(t, rho,
    ux, uy)`` at every event time."""
    t = 0
    for ev in events:
        while t < ev:
            if t < ramp:  # inflow(t + 1) = inflow sin^2(pi/2 (t + 1) / ramp)
                s.set_inflow(inflow * math.sin(0.5 * math.pi * (t + 1) / ramp) ** 2)
                n_steps = 1
            else:
                n_steps = ev - t
            s.step(n_steps)
            t += n_steps
            if bar is not None:
                bar.update(n_steps * s.shape[0])
            if ramp > 0 and t == ramp:
                _kick(s, kick)
        on_event(t, *s.macroscopic())


def _simulate_batch(cfg: DatasetConfig, chunk: list[dict], device: torch.device,
                    bar) -> dict[str, torch.Tensor]:
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    r = cfg.refine
    vel = cfg.dx_lattice / cfg.dt_lattice  # m/s per lattice velocity
    w0, w1 = round(WAKE_X[0] * cfg.nx), round(WAKE_X[1] * cfg.nx)
    p_every = _probe_every(cfg)
    spin = cfg.spinup_steps
    ramp = min(cfg.ramp_steps, spin)
    end = spin + (cfg.n_snapshots - 1) * cfg.snapshot_every
    snaps = {spin + k * cfg.snapshot_every for k in range(cfg.n_snapshots)}
    probes = set(range(spin, end + 1, p_every))
    events = sorted(snaps | probes | set(range(0, end + 1, p_every)) | {end})
    s, inflow = _solver(cfg, chunk, r, device, dtype)
    kick = _kick_field(cfg, chunk, s)
    if ramp > 0:  # start from rest; the inflow ramps up, then the kick
        s.initialize()
    else:  # impulsive start with the kick
        s.initialize(ux=inflow.unsqueeze(-1).expand(-1, *s.shape[1:]), uy=kick)
    umax = torch.zeros(len(chunk), dtype=dtype, device=device)
    frames: dict[str, list] = {"u": [], "v": [], "p": []}
    probe_v: list[torch.Tensor] = []

    def record(t, rho, ux, uy):
        sp = (ux * ux + uy * uy).flatten(1).max(1).values.sqrt()
        if not bool(torch.isfinite(sp).all()):
            bad = (~torch.isfinite(sp)).nonzero().flatten().tolist()
            raise RuntimeError(f"solver diverged before step {t} (Re "
                               f"{[round(chunk[i]['re'], 1) for i in bad]}, geometry "
                               f"{[chunk[i]['geometry'] for i in bad]})")
        torch.maximum(umax, sp, out=umax)
        if t in probes:
            probe_v.append(_down(uy, r)[:, :, w0:w1].float().cpu())
        if t in snaps:
            frames["u"].append(_stored(ux * vel, r).float().cpu())
            frames["v"].append(_stored(uy * vel, r).float().cpu())
            frames["p"].append(_stored((rho - 1.0) * CS2 * vel**2, r).float().cpu())

    _run(s, inflow, kick, ramp, events, record, bar)
    mask = (_down((~s.solid).to(torch.float64), r) >= 0.5).cpu()
    # stored cells whose centre is (mostly) inside an obstacle hold the wall state u = v = p = 0,
    # as the solver's own solid nodes do
    out = {k: torch.stack(v, 1) * mask.unsqueeze(1) for k, v in frames.items()}
    out["probe_v"] = torch.stack(probe_v, 1)  # (B, T_probe, ny, n_wake), lattice units
    out["mach"] = (umax / math.sqrt(CS2)).cpu()
    out["mask"] = mask.to(torch.int8)
    out["inflow"] = _down1(inflow * vel, r).float().cpu()
    return out


def _simulate(cfg: DatasetConfig, plans: list[dict], device: torch.device, bar) -> dict:
    """Run the solver for ``plans`` in batches; return stored fields, masks, inflows and the raw
    signals behind the per-trajectory measures (wake v every :func:`_probe_every` steps, max
    Mach over every probe time of the whole run)."""
    parts = [_simulate_batch(cfg, plans[b0:b0 + cfg.batch_size], device, bar)
             for b0 in range(0, len(plans), cfg.batch_size)]
    return {k: torch.cat([p[k] for p in parts], 0) for k in parts[0]}


def _kick(s: LBMSolver, uy: torch.Tensor) -> None:
    """Add ``uy`` (B, NY, NX) to the transverse velocity of the running solver (equilibrium
    shift of the populations, density and non-equilibrium parts unchanged)."""
    rho, ux, vy = s.macroscopic()
    fluid = ~s.solid
    s.f = (s.f + s.equilibrium(rho, ux, vy + torch.where(fluid, uy, 0.0))
           - s.equilibrium(rho, ux, vy))


# --------------------------------------------------------------------------- measures
#: Records shorter than this many convective times D / U are never re-drawn for a weak wake.
REDRAW_MIN_CONVECTIVE = 10.0

#: Labelling thresholds (see :func:`flow_measures` and :func:`classify`).
AMPLITUDE_STEADY = 1e-3  # wake std(v) / U below this: steady
PERIODICITY_PERIODIC = 0.98  # correlation of the wake's v with itself one period later
ENVELOPE_TRANSIENT = 1.25  # fluctuation-energy ratio, last vs first whole periods (either way)
DRIFT_TRANSIENT = 0.5  # change of the wake's mean v, last vs first periods, / fluctuation RMS


def flow_measures(v: np.ndarray, dt: float, d: float, u: float) -> dict[str, float]:
    """Per-trajectory measures from the wake's transverse velocity ``v`` (T, ...) sampled every
    ``dt`` (any time unit); ``d`` the obstacle extent and ``u`` the mean inflow in consistent
    units (St is dimensionless).

    * ``amplitude``: RMS over the wake cells of std_t(v), divided by ``u``.
    * ``strouhal``: f d / u, f the peak of the cell-summed Hann-windowed power spectrum of the
      mean-removed v (8x zero padding, Gaussian peak interpolation); NaN if the peak is below two
      cycles per record (no oscillation resolved).
    * ``periodicity``: max over lags within +-20 % of 1 / f of the correlation between v(t) and
      v(t + lag), all cells together: 1 for a limit cycle, lower for irregular or modulated flow.
    * ``concentration``: share of the fluctuation power within +-1.5 spectral bins of f, 2f, 3f.
    * ``envelope``: fluctuation energy of the record's last whole periods over its first (as
      many whole periods as fit in half the record; halves without an oscillation).
    * ``drift``: RMS change of the time-mean v between those two windows over the fluctuation
      RMS (0 for a limit cycle, large for a mean flow still developing).
    """
    v = np.asarray(v, dtype=np.float64).reshape(len(v), -1)
    n = len(v)
    s = v - v.mean(0)
    var = (s * s).mean(0)
    amp = float(np.sqrt(var.mean())) / u
    pad = 8
    win = np.hanning(n)[:, None]
    spec = (np.abs(np.fft.rfft(s * win, n=pad * n, axis=0)) ** 2).sum(1)
    k = int(np.argmax(spec[1:]) + 1)
    kf = float(k)
    if 1 <= k < len(spec) - 1:
        a, b_, c = np.log(spec[k - 1:k + 2] + 1e-300)
        den = a - 2 * b_ + c
        kf = k + (0.5 * (a - c) / den if den != 0 else 0.0)
    cycles = kf / pad  # cycles per record
    oscillates = cycles >= 2.0
    st = cycles / (n * dt) * d / u if oscillates else float("nan")
    total = float(spec[1:].sum())
    idx = np.arange(len(spec))
    band = np.zeros(len(spec), dtype=bool)
    for m in (1, 2, 3):
        band |= np.abs(idx - m * kf) <= 1.5 * pad
    conc = float(spec[band].sum()) / max(total, 1e-300)
    periodicity = float("nan")
    w = n // 2
    if oscillates:
        lag0 = n / cycles
        w = max(1, round(math.floor(0.5 * n / lag0) * lag0)) if n >= 2 * lag0 else n // 2
        best = -1.0
        for lag in range(max(1, int(0.8 * lag0)), min(n - 2, int(math.ceil(1.2 * lag0))) + 1):
            a_, b2 = s[:-lag], s[lag:]
            den2 = math.sqrt(float((a_ * a_).sum()) * float((b2 * b2).sum()))
            if den2 > 0:
                best = max(best, float((a_ * b2).sum()) / den2)
        periodicity = best
    first, last = v[:w], v[n - w:]
    envelope = float(last.var(0).sum()) / max(float(first.var(0).sum()), 1e-300)
    drift = float(np.sqrt(((last.mean(0) - first.mean(0)) ** 2).mean()
                          / max(var.mean(), 1e-300)))
    return {"strouhal": st, "amplitude": amp, "periodicity": periodicity,
            "concentration": conc, "envelope": envelope, "drift": drift}


def classify(m: dict[str, float]) -> str:
    """Regime label from :func:`flow_measures` (first match wins):

    ``steady``    amplitude < AMPLITUDE_STEADY: nothing moves;
    ``transient`` no oscillation resolved (St NaN), or the mean drifts by more than
                  DRIFT_TRANSIENT fluctuation RMS, or a clean oscillation (periodicity >=
                  PERIODICITY_PERIODIC) whose fluctuation energy grows or decays by more than
                  ENVELOPE_TRANSIENT between the first and last whole periods (shedding onset
                  or decay);
    ``periodic``  periodicity >= PERIODICITY_PERIODIC with a steady envelope: a limit cycle;
    ``irregular`` otherwise: modulated, quasi-periodic or chaotic shedding.
    """
    if not m["amplitude"] >= AMPLITUDE_STEADY:
        return "steady"
    if not math.isfinite(m["strouhal"]) or m["drift"] > DRIFT_TRANSIENT:
        return "transient"
    if m["periodicity"] >= PERIODICITY_PERIODIC:
        env = m["envelope"]
        if env > ENVELOPE_TRANSIENT or env < 1.0 / ENVELOPE_TRANSIENT:
            return "transient"
        return "periodic"
    return "irregular"


def _measure(cfg: DatasetConfig, plans: list[dict], arr: dict) -> list[dict]:
    p_every = _probe_every(cfg)
    w0, w1 = round(WAKE_X[0] * cfg.nx), round(WAKE_X[1] * cfg.nx)
    res = []
    for i, p in enumerate(plans):
        fluid = arr["mask"][i, :, w0:w1].bool().reshape(-1).numpy()
        v = arr["probe_v"][i].reshape(arr["probe_v"].shape[1], -1).numpy()[:, fluid]
        m = flow_measures(v, p_every, p["d"] * cfg.refine, p["u_lat"])
        m["mach"] = float(arr["mach"][i])
        m["regime"] = classify(m)
        res.append(m)
    return res


def solver_description(cfg: DatasetConfig) -> str:
    """Human-readable description of the scheme :func:`generate_dataset` runs for ``cfg``."""
    r = cfg.refine
    parts = [
        "D2Q9 lattice Boltzmann, BGK (single-relaxation-time) collision, tau = 1/2 + 3 nu per "
        "trajectory (variable tau)",
        "He-Luo incompressible equilibrium (velocity = momentum)" if cfg.incompressible
        else "standard second-order equilibrium",
        "channel walls: half-way bounce-back",
        "obstacles: linear interpolated (Bouzidi) bounce-back with exact wall fractions"
        if cfg.obstacle_boundary == "curved" else "obstacles: half-way bounce-back (staircase)",
        "inlet: parabolic velocity profile by non-equilibrium bounce-back (Zou-He without the "
        "transverse correction)",
        "outlet: characteristic non-reflecting, Guo non-equilibrium extrapolation at "
        "rho = 1 + (<u> - <u_in>)/c_s" if cfg.outlet == "characteristic"
        else "outlet: Guo non-equilibrium extrapolation at rho = 1",
    ]
    if cfg.sponge:
        parts.append(f"outlet sponge {round(cfg.sponge * r)} columns")
    ny, nx = round(cfg.ny * r), round(cfg.nx * r)
    ramp = min(cfg.ramp_steps, cfg.spinup_steps)
    start = (f"start from rest, sin^2 inflow ramp over {ramp} steps, then a transverse kick of "
             f"{cfg.kick:g} U" if ramp > 0 else
             f"impulsive start from the inflow profile with a transverse kick of {cfg.kick:g} U")
    parts += [
        f"lattice {ny}x{nx} (refine {r:g}), sampled at the stored {cfg.ny}x{cfg.nx} cell "
        "centres (bilinear)" if r != 1 else f"lattice {ny}x{nx} (refine 1) = stored grid",
        f"{cfg.dtype} stepping, float32 storage",
        f"{start}; {cfg.spinup_steps} steps before the first snapshot, then one every "
        f"{cfg.snapshot_every}",
    ]
    return "; ".join(parts)


def _to_dataset(cfg: DatasetConfig, split: str, plans: list[dict], arr: dict,
                meas: list[dict]) -> xr.Dataset:
    dx = cfg.dx
    x = (np.arange(cfg.nx) + 0.5) * dx
    y = (np.arange(cfg.ny) + 0.5) * dx
    t = np.arange(cfg.n_snapshots) * cfg.dt
    dims4 = ("traj", "time", "y", "x")

    def per_traj(key: str, units: str, long_name: str, src=None) -> tuple:
        vals = [m[key] for m in meas] if src is None else src
        return (("traj",), np.array(vals, dtype=np.float32),
                {"units": units, "long_name": long_name})

    ds = xr.Dataset(
        {
            "u": (dims4, arr["u"].numpy(), {"units": "m s-1", "long_name": "x velocity"}),
            "v": (dims4, arr["v"].numpy(), {"units": "m s-1", "long_name": "y velocity"}),
            "p": (dims4, arr["p"].numpy(), {"units": "m2 s-2", "long_name":
                                            "kinematic pressure p/rho relative to the outlet"}),
            "mask": (("traj", "y", "x"), arr["mask"].numpy(),
                     {"units": "1", "long_name": "1 = fluid, 0 = obstacle"}),
            "inflow": (("traj", "y"), arr["inflow"].numpy(),
                       {"units": "m s-1", "long_name": "inlet u profile"}),
            "regime": (("traj",), np.array([m["regime"] for m in meas], dtype=object),
                       {"units": "1", "long_name": "flow regime measured from strouhal, "
                        "amplitude, periodicity, envelope and drift (physics.dataset.classify)"}),
            "re_band": (("traj",), np.array([p["band"] for p in plans], dtype=object),
                        {"units": "1", "long_name": "Reynolds band Re was drawn from"}),
            "geometry": (("traj",), np.array([p["geometry"] for p in plans], dtype=object),
                         {"units": "1", "long_name": "obstacle shapes joined by +"}),
            "reynolds": per_traj("re", "1", "u_mean D / nu, D = cross-stream extent of the "
                                 "largest obstacle", [p["re"] for p in plans]),
            "diameter": per_traj("d", "m", "D: cross-stream extent of the largest obstacle",
                                 [p["d"] * dx for p in plans]),
            "tau": per_traj("tau", "1", "BGK relaxation time on the solver lattice",
                            [p["tau"] for p in plans]),
            "strouhal": per_traj("strouhal", "1", "f D / u_mean, f the dominant frequency of "
                                 "the wake's transverse velocity (NaN: no oscillation)"),
            "amplitude": per_traj("amplitude", "1", "RMS over the wake of std over time of v, "
                                  "divided by u_mean"),
            "periodicity": per_traj("periodicity", "1", "correlation of the wake's v with "
                                    "itself one shedding period later"),
            "spectral_concentration": per_traj("concentration", "1", "share of the wake's v "
                                               "fluctuation power at f, 2f, 3f"),
            "envelope": per_traj("envelope", "1", "fluctuation energy of the wake's v, last "
                                 "over first whole shedding periods of the record"),
            "drift": per_traj("drift", "1", "RMS change of the wake's mean v, last vs first "
                              "whole periods, over its fluctuation RMS"),
            "mach_max": per_traj("mach", "1", "max over the lattice and time of |u| / c_s"),
        },
        coords={"x": ("x", x, {"units": "m"}), "y": ("y", y, {"units": "m"}),
                "time": ("time", t, {"units": "s"}), "traj": ("traj", np.arange(len(plans)))},
    )
    cfg_d = asdict(cfg)
    ds.attrs = {
        "title": f"physweep {cfg.name} {split}", "split": split, "seed": cfg.seed,
        "dx": dx, "dt": cfg.dt, "dx_lattice": cfg.dx_lattice, "dt_lattice": cfg.dt_lattice,
        "regime_names": json.dumps(list(REGIME_LABELS)),
        "re_bands": json.dumps(cfg.regimes),
        "wake_window_x": json.dumps([WAKE_X[0] * cfg.nx * dx, WAKE_X[1] * cfg.nx * dx]),
        "solver": solver_description(cfg),
        "config": json.dumps(cfg_d, default=list),
        **provenance(),
    }
    return ds


def _simulate_split(cfg: DatasetConfig, split: str, plans: list[dict], device: torch.device,
                    bar) -> tuple[list[dict], dict, list[dict]]:
    """Simulate and measure a split; trajectories whose wake amplitude stays below
    ``cfg.min_amplitude`` over a record of >= REDRAW_MIN_CONVECTIVE convective times are
    re-drawn (same Re band, new geometry / Re / inflow; the livelier draw is kept) up to
    ``cfg.max_redraws`` times, so every kept trajectory has dynamics to predict."""
    arr = _simulate(cfg, plans, device, bar)
    meas = _measure(cfg, plans, arr)
    plans = list(plans)
    rec = (cfg.n_snapshots - 1) * cfg.snapshot_every

    def weak_ones() -> list[int]:
        # only records long enough to show shedding (>= REDRAW_MIN_CONVECTIVE times D / U, two
        # periods at St 0.2) can tell a quiet wake from a slow one
        return [i for i, m in enumerate(meas) if not m["amplitude"] >= cfg.min_amplitude
                and rec * plans[i]["u_lat"] / (plans[i]["d"] * cfg.refine)
                >= REDRAW_MIN_CONVECTIVE]

    for attempt in range(1, cfg.max_redraws + 1):
        weak = weak_ones()
        if not weak:
            break
        new = _redraw(cfg, split, [plans[i]["band"] for i in weak], attempt)
        if bar is not None:
            bar.total += len(new) * (cfg.spinup_steps + (cfg.n_snapshots - 1)
                                     * cfg.snapshot_every)
        arr_new = _simulate(cfg, new, device, bar)
        meas_new = _measure(cfg, new, arr_new)
        for j, i in enumerate(weak):
            if not meas_new[j]["amplitude"] > meas[i]["amplitude"]:
                continue  # keep the livelier of the two
            plans[i] = new[j]
            meas[i] = meas_new[j]
            for k in arr:
                arr[k][i] = arr_new[k][j]
    weak = weak_ones()
    if weak and cfg.max_redraws:
        warnings.warn(f"{cfg.name} {split}: trajectories {weak} keep a wake amplitude below "
                      f"{cfg.min_amplitude} after {cfg.max_redraws} re-draws", stacklevel=2)
    return plans, arr, meas


def generate_dataset(cfg: DatasetConfig, out_dir: Path, progress: bool = True) -> dict[str, Path]:
    """Simulate every split and write ``out_dir/{train,test,ood}.nc`` atomically."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    device = _resolve_device(cfg.device)
    counts = {"train": cfg.n_train, "test": cfg.n_test, "ood": cfg.n_ood}
    plans = {s: _plan_split(cfg, s, n) for s, n in counts.items()}
    steps = cfg.spinup_steps + (cfg.n_snapshots - 1) * cfg.snapshot_every
    total = steps * sum(counts.values())
    paths: dict[str, Path] = {}
    with tqdm(total=total, disable=not progress, unit="traj-step", desc=cfg.name) as bar:
        for split in SPLITS:
            if counts[split] == 0:
                continue
            bar.set_postfix_str(split)
            plans[split], arr, meas = _simulate_split(cfg, split, plans[split], device, bar)
            worst = max(m["mach"] for m in meas)
            if worst > cfg.mach_limit:
                warnings.warn(f"{cfg.name} {split}: Mach number reaches {worst:.3f} > "
                              f"{cfg.mach_limit} (lower u_lat_max or the blockage)", stacklevel=2)
            path = out_dir / f"{split}.nc"
            write_netcdf(_to_dataset(cfg, split, plans[split], arr, meas), path)
            paths[split] = path
    return paths


def _optional(ds: xr.Dataset, name: str) -> torch.Tensor | None:
    if name not in ds:
        return None
    return torch.from_numpy(ds[name].values.astype(np.float32))


def load_split(path: Path) -> FlowSplit:
    """Read one split written by :func:`generate_dataset`."""
    with xr.open_dataset(path, engine="netcdf4") as ds:
        ds = ds.load()
    fields = torch.from_numpy(np.stack([ds[c].values for c in CHANNELS], axis=2).astype(
        np.float32))
    names = json.loads(ds.attrs["regime_names"])
    regime = torch.tensor([names.index(str(r)) for r in ds["regime"].values], dtype=torch.int64)
    xx, yy = np.meshgrid(ds["x"].values, ds["y"].values)
    coords = torch.from_numpy(np.stack([xx, yy], -1).astype(np.float32))
    return FlowSplit(
        fields=fields,
        mask=torch.from_numpy(ds["mask"].values.astype(bool)),
        coords=coords,
        inflow=torch.from_numpy(ds["inflow"].values.astype(np.float32)),
        regime=regime,
        regime_names=names,
        geometry=[str(g) for g in ds["geometry"].values],
        reynolds=torch.from_numpy(ds["reynolds"].values.astype(np.float32)),
        dt=float(ds.attrs["dt"]),
        dx=float(ds.attrs["dx"]),
        attrs=dict(ds.attrs),
        strouhal=_optional(ds, "strouhal"),
        amplitude=_optional(ds, "amplitude"),
    )


def sample_points(mask: torch.Tensor, n: int | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Flat (row-major) indices of fluid cells of ``mask`` (H, W) bool; ``n=None`` -> all.

    With ``n`` given, ``n`` distinct fluid cells are drawn at random (sorted); ValueError if the
    mask has fewer fluid cells.  Use ``coords.view(-1, 2)[idx]`` for physical positions.
    """
    idx = mask.reshape(-1).nonzero().flatten()
    if n is None:
        return idx
    if n > idx.numel():
        raise ValueError(f"asked for {n} points but the mask has {idx.numel()} fluid cells")
    perm = torch.randperm(idx.numel(), generator=generator, device="cpu")[:n].to(idx.device)
    return idx[perm].sort().values
