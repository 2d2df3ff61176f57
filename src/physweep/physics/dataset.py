"""Channel-flow datasets around random obstacles, generated with the batched D2Q9 solver.

Setup (physical units): a channel of height ``height_m`` (0.41 m as in Schäfer–Turek) and length
``height_m * nx / ny``, parabolic inflow on the left (mean 0.6–0.8 m/s drawn per trajectory),
a non-reflecting outflow on the right, no-slip walls top and bottom and on the obstacles.
Lattice units convert with dx = height_m / (ny * refine) and dt = U_LAT_REF * dx / U_REF (a mean
inflow of 1 m/s would be 0.1 lattice units; the demo's 0.06–0.09 keep the centreline Mach number
below 0.23 and the column blockage <= 40% keeps the local one moderate).

Solver settings (see :mod:`physweep.physics.lbm`): D2Q9 BGK with the He–Luo incompressible
equilibrium (the stored velocity is the momentum, so steady fluxes are conserved exactly instead of
up to O(Ma^2) density changes) and a characteristic (plane-wave non-reflecting) rho-outlet: with the
plain rho = 1 outlet the channel's quarter-wave acoustic mode, nearly undamped at tau ~ 0.52 and
close to the shedding frequency, swung the column fluxes by up to +-50%.  float64 stepping,
float32 storage, block averaging to the stored grid when ``refine`` > 1.

Reynolds number Re = u_mean * D / nu with D the cross-stream extent of the largest obstacle (its
blockage D / H is 0.25–0.35).  Each trajectory draws a regime and Re uniformly in its range; the
lattice viscosity is nu = u_lat * D_lat / Re, tau = 1/2 + 3 nu.  On the demo lattice (32 rows,
D = 5–11 cells, u_lat 0.06–0.08) the default regimes map to (measured on the default draws)
  steady    Re  10–40 : nu = 0.010–0.067, tau = 0.53–0.70  (steady wake, std(v)/U < 1e-3),
  periodic  Re  80–110: nu = 0.005–0.008, tau = 0.514–0.525 (periodic vortex street),
  irregular Re 130–170: nu = 0.004–0.006, tau = 0.512–0.519 (strong shedding; wake interaction
                          and non-periodic dynamics with two or three obstacles).
If u_lat * D / Re would give tau < ``tau_min`` the inflow speed of that trajectory is raised
(never above ``u_lat_max``), so Re is always exact and BGK stays stable on the coarse lattice.
A small transverse velocity kick at t = 0 shortens the shedding spin-up.

Splits: ``train`` and ``test`` draw 1 or 2 obstacles among circle / square / ellipse (random
position, size and angle; different seeds), ``ood`` uses geometries never seen in training:
triangles (1–2) or three in-distribution obstacles.  The same config gives the same data.

netCDF layout: dims (traj, time, y, x); u, v (m/s), p (m2 s-2, kinematic pressure p/rho relative
to the outlet), mask(traj, y, x) int8 1 = fluid, inflow(traj, y) m/s, regime(traj) str,
geometry(traj) str, reynolds(traj); coords x, y (m, cell centres), time (s).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from physweep.io import provenance, write_netcdf
from physweep.physics.dataset_config import (  # noqa: F401  (re-exported)
    ID_SHAPES,
    SPLITS,
    U_LAT_REF,
    U_REF,
    DatasetConfig,
    full_config,
)
from physweep.physics.flowsplit import CHANNELS, FlowSplit
from physweep.physics.lbm import LBMSolver, parabolic_profile


# --------------------------------------------------------------------------- geometry
def _shape_mask(kind: str, cx: float, cy: float, size: float, angle: float, aspect: float,
                xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Solid mask of one shape; ``size`` = circumradius-like half extent (lattice units)."""
    dx, dy = torch.broadcast_tensors(xs - cx, ys - cy)
    ca, sa = math.cos(angle), math.sin(angle)
    xr_, yr_ = ca * dx + sa * dy, -sa * dx + ca * dy
    if kind == "circle":
        return dx * dx + dy * dy <= size * size
    if kind == "square":
        a = size / math.sqrt(2.0) * 1.15
        return (xr_.abs() <= a) & (yr_.abs() <= a)
    if kind == "ellipse":
        a, b = size, size * aspect
        return (xr_ / a) ** 2 + (yr_ / b) ** 2 <= 1.0
    if kind == "triangle":
        inside = torch.ones_like(dx, dtype=torch.bool)
        for k in range(3):
            th = angle + 2 * math.pi * k / 3
            inside &= (math.cos(th) * dx + math.sin(th) * dy) <= 0.5 * size
        return inside
    raise ValueError(f"unknown shape {kind!r}")


def _sample_geometry(split: str, ny: int, nx: int, blockage: tuple[float, float],
                     g: torch.Generator, max_blockage: float = 0.4) -> tuple[torch.Tensor, str, float]:
    """Return (solid mask (ny, nx) bool, label, D in cells) on the solver lattice."""
    def u(a: float, b: float) -> float:
        return a + (b - a) * float(torch.rand((), generator=g))

    ys = torch.arange(ny, dtype=torch.float64).view(-1, 1) + 0.5
    xs = torch.arange(nx, dtype=torch.float64).view(1, -1) + 0.5
    h = float(ny)
    if split == "ood":
        if float(torch.rand((), generator=g)) < 0.5:
            kinds = ["triangle"] * (1 + int(torch.randint(2, (1,), generator=g)))
        else:
            kinds = [ID_SHAPES[int(torch.randint(3, (1,), generator=g))] for _ in range(3)]
    else:
        n = 1 + int(torch.randint(2, (1,), generator=g))
        kinds = [ID_SHAPES[int(torch.randint(3, (1,), generator=g))] for _ in range(n)]
    for _attempt in range(200):
        solid = torch.zeros(ny, nx, dtype=torch.bool)
        ok = True
        for j, kind in enumerate(kinds):
            scale = 1.0 if j == 0 else u(0.6, 1.0)
            d = u(*blockage) * h * scale
            cx = u(0.2, 0.35) * nx if j == 0 else u(0.2, 0.55) * nx
            cy = u(0.3, 0.7) * h
            m = _shape_mask(kind, cx, cy, 0.5 * d, u(0.0, math.pi), u(0.5, 0.8), xs, ys)
            rows = m.any(1).nonzero()
            cols = m.any(0).nonzero()
            if len(rows) == 0:
                ok = False
                break
            # keep >= 2 cells to the walls, 3 to inlet/outlet, and >= 2 cells between obstacles
            if rows.min() < 2 or rows.max() > ny - 3 or cols.min() < 3 or cols.max() > nx - 4:
                ok = False
                break
            grown = torch.nn.functional.max_pool2d(solid[None, None].float(), 5, 1, 2)[0, 0] > 0
            if (grown & m).any():
                ok = False
                break
            solid |= m
        # total blockage of any column <= max_blockage (side-by-side obstacles would choke the
        # channel and push the local Mach number far beyond the inflow's)
        if ok and float(solid.sum(0).max()) > max_blockage * ny:
            ok = False
        if ok:
            break
    else:  # pragma: no cover - the ranges above always leave room
        raise RuntimeError("could not place obstacles")
    d_max = _largest_extent(solid)
    return solid, "+".join(kinds), d_max


def _largest_extent(solid: torch.Tensor) -> float:
    """Cross-stream extent (cells) of the largest connected obstacle (4-connectivity)."""
    from scipy import ndimage

    lab, n = ndimage.label(solid.numpy())
    best = 0.0
    for k in range(1, n + 1):
        rows = np.nonzero((lab == k).any(1))[0]
        best = max(best, float(rows.max() - rows.min() + 1))
    return best


def _block_mean(a: torch.Tensor, r: int) -> torch.Tensor:
    if r == 1:
        return a
    return torch.nn.functional.avg_pool2d(a.reshape(-1, 1, *a.shape[-2:]), r).reshape(
        *a.shape[:-2], a.shape[-2] // r, a.shape[-1] // r)


def _resolve_device(dev: str) -> torch.device:
    if dev == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(dev)


def _plan_split(cfg: DatasetConfig, split: str, n: int) -> list[dict]:
    g = torch.Generator().manual_seed(cfg.seed * 1000 + SPLITS.index(split) + 1)
    names = list(cfg.regimes)
    ny, nx = cfg.ny * cfg.refine, cfg.nx * cfg.refine
    order = torch.randperm(n, generator=g).tolist()
    plans = []
    for i in range(n):
        regime = names[order[i] % len(names)]
        lo, hi = cfg.regimes[regime]
        re = lo + (hi - lo) * float(torch.rand((), generator=g))
        solid, label, d = _sample_geometry(split, ny, nx, cfg.blockage_range, g, cfg.max_blockage)
        u_lo, u_hi = cfg.u_mean_range
        u_phys = u_lo + (u_hi - u_lo) * float(torch.rand((), generator=g))
        u_lat = u_phys * U_LAT_REF / U_REF
        nu_min = (cfg.tau_min - 0.5) / 3.0
        u_lat = min(max(u_lat, nu_min * re / d), cfg.u_lat_max)
        nu = u_lat * d / re
        tau = 0.5 + 3.0 * nu
        if tau < 0.5 + 0.5 * (cfg.tau_min - 0.5):
            raise ValueError(f"Re={re:.0f} with D={d:.0f} cells needs tau={tau:.4f}: refine the "
                             "lattice or lower the regime's Re range")
        sign = 1.0 if float(torch.rand((), generator=g)) < 0.5 else -1.0
        plans.append({"regime": regime, "re": re, "solid": solid, "geometry": label, "d": d,
                      "u_lat": u_lat, "tau": tau, "kick_sign": sign})
    return plans


def _simulate(cfg: DatasetConfig, plans: list[dict], device: torch.device, bar) -> dict:
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    ny, nx = cfg.ny * cfg.refine, cfg.nx * cfg.refine
    out = {"u": [], "v": [], "p": [], "mask": [], "inflow": []}
    vel = cfg.dx_lattice / cfg.dt_lattice  # m/s per lattice velocity
    for b0 in range(0, len(plans), cfg.batch_size):
        chunk = plans[b0:b0 + cfg.batch_size]
        solid = torch.stack([p["solid"] for p in chunk]).to(device)
        u_lat = torch.tensor([p["u_lat"] for p in chunk], dtype=dtype)
        inflow = parabolic_profile(ny, u_lat, dtype=dtype, device=device)
        tau = torch.tensor([p["tau"] for p in chunk], dtype=dtype, device=device)
        s = LBMSolver(solid, tau, inflow, x_mode="open", dtype=dtype, device=device,
                      compile=cfg.compile, sponge=cfg.sponge * cfg.refine,
                      incompressible=cfg.incompressible, outlet=cfg.outlet)
        ys = (torch.arange(ny, dtype=dtype, device=device) + 0.5) / ny
        xs = (torch.arange(nx, dtype=dtype, device=device) + 0.5) / nx
        sign = torch.tensor([p["kick_sign"] for p in chunk], dtype=dtype, device=device)
        kick = (cfg.kick * sign.view(-1, 1, 1) * u_lat.to(device).view(-1, 1, 1)
                * torch.sin(math.pi * ys).view(1, -1, 1)
                * torch.exp(-(((xs - 0.35) / 0.15) ** 2)).view(1, 1, -1))
        s.initialize(ux=inflow.unsqueeze(-1).expand(-1, ny, nx), uy=kick)
        frames = {"u": [], "v": [], "p": []}
        done = 0
        schedule = [cfg.spinup_steps] + [cfg.snapshot_every] * (cfg.n_snapshots - 1)
        for k, n_steps in enumerate(schedule):
            remaining = n_steps
            while remaining > 0:
                m = min(remaining, 250)
                s.step(m)
                remaining -= m
                done += m
                if bar is not None:
                    bar.update(m * len(chunk))
            rho, ux, uy = s.macroscopic()
            if not bool(torch.isfinite(rho).all()):
                bad = (~torch.isfinite(rho)).flatten(1).any(1).nonzero().flatten().tolist()
                raise RuntimeError(f"solver diverged at snapshot {k} in trajectories "
                                   f"{[b0 + i for i in bad]} (tau {tau[bad].tolist()})")
            frames["u"].append(_block_mean(ux * vel, cfg.refine).float().cpu())
            frames["v"].append(_block_mean(uy * vel, cfg.refine).float().cpu())
            frames["p"].append(_block_mean((rho - 1.0) / 3.0 * vel**2, cfg.refine).float().cpu())
        for key in frames:
            out[key].append(torch.stack(frames[key], 1))
        fluid_frac = _block_mean((~solid).to(torch.float32), cfg.refine)
        out["mask"].append((fluid_frac >= 0.5).to(torch.int8).cpu())
        inflow_st = inflow * vel
        if cfg.refine > 1:
            inflow_st = inflow_st.view(len(chunk), cfg.ny, cfg.refine).mean(-1)
        out["inflow"].append(inflow_st.float().cpu())
    return {k: torch.cat(v, 0) for k, v in out.items()}


def _to_dataset(cfg: DatasetConfig, split: str, plans: list[dict], arr: dict) -> xr.Dataset:
    dx = cfg.dx
    x = (np.arange(cfg.nx) + 0.5) * dx
    y = (np.arange(cfg.ny) + 0.5) * dx
    t = np.arange(cfg.n_snapshots) * cfg.dt
    dims4 = ("traj", "time", "y", "x")
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
            "regime": (("traj",), np.array([p["regime"] for p in plans], dtype=object),
                       {"units": "1", "long_name": "flow regime label"}),
            "geometry": (("traj",), np.array([p["geometry"] for p in plans], dtype=object),
                         {"units": "1", "long_name": "obstacle shapes joined by +"}),
            "reynolds": (("traj",), np.array([p["re"] for p in plans], dtype=np.float32),
                         {"units": "1", "long_name": "u_mean D / nu, D = largest obstacle"}),
            "tau": (("traj",), np.array([p["tau"] for p in plans], dtype=np.float32),
                    {"units": "1", "long_name": "BGK relaxation time"}),
        },
        coords={"x": ("x", x, {"units": "m"}), "y": ("y", y, {"units": "m"}),
                "time": ("time", t, {"units": "s"}), "traj": ("traj", np.arange(len(plans)))},
    )
    cfg_d = asdict(cfg)
    ds.attrs = {
        "title": f"physweep {cfg.name} {split}", "split": split, "seed": cfg.seed,
        "dx": dx, "dt": cfg.dt, "dx_lattice": cfg.dx_lattice, "dt_lattice": cfg.dt_lattice,
        "regime_names": json.dumps(list(cfg.regimes)),
        "solver": "D2Q9 BGK, half-way bounce-back walls/obstacles, non-equilibrium bounce-back "
                  "velocity inlet, Guo non-equilibrium extrapolation outlet (rho=1)",
        "config": json.dumps(cfg_d, default=list),
        **provenance(),
    }
    return ds


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
            arr = _simulate(cfg, plans[split], device, bar)
            path = out_dir / f"{split}.nc"
            write_netcdf(_to_dataset(cfg, split, plans[split], arr), path)
            paths[split] = path
    return paths


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
