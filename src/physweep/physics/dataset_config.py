"""The dataset's configuration (torch-free, so config validation at parse time stays cheap).

The generator and the meaning of every field: :mod:`physweep.physics.dataset`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

U_REF = 1.0  # m/s that maps to U_LAT_REF
U_LAT_REF = 0.04  # lattice velocity of U_REF (max |u| / c_s <= 0.2 with the obstacles, measured)
ID_SHAPES = ("circle", "square", "ellipse")
SPLITS = ("train", "test", "ood")
#: Regime labels, the ``regime_names`` of every file in this order (measured per trajectory, see
#: physweep.physics.dataset.classify; a label may be absent from a dataset).
REGIME_LABELS = ("steady", "transient", "periodic", "irregular")


def _default_regimes() -> dict[str, list[float]]:
    # every single obstacle sheds; Re 10-40 (steady) is dropped, see physweep.physics.dataset
    return {"shedding": [100.0, 170.0]}


@dataclass(frozen=True)
class DatasetConfig:
    name: str = "channel_demo"  # directory / label of the dataset
    ny: int = 32  # stored rows (the demo generates in ~80-95 s on 2 CPU cores)
    nx: int = 64  # stored columns: channel length 2 H, room for a wake behind the obstacles
    refine: float = 2  # solver lattice = refine x stored grid (64 x 128): St within 3 % of 4x
    n_train: int = 24  # training trajectories
    n_test: int = 6  # new in-distribution geometries
    n_ood: int = 6  # unseen geometries (triangles, three obstacles)
    n_snapshots: int = 56  # after the spin-up: ~4 shedding periods (median 13 snapshots each)
    snapshot_every: int = 160  # solver steps between snapshots (periods 11-21 snapshots)
    spinup_steps: int = 14000  # ~2.8 flow-throughs: ramp, kick, shedding saturated
    # Re bands: name -> [Re_min, Re_max], drawn evenly; the stored regime label is measured
    regimes: dict[str, list[float]] = field(default_factory=_default_regimes)
    seed: int = 0  # all geometry/regime/inflow draws derive from it
    device: str = "auto"  # "auto" -> cuda if available else cpu
    height_m: float = 0.41  # physical channel height (Schäfer–Turek)
    u_mean_range: tuple[float, float] = (0.6, 0.8)  # mean inflow speed draw, m/s
    blockage_range: tuple[float, float] = (0.25, 0.35)  # cross-stream extent D / H draw
    max_blockage: float = 0.4  # max fraction of any column covered by obstacles (stacked ones)
    tau_min: float = 0.502  # smallest BGK relaxation time allowed (stable at Mach <= 0.2)
    u_lat_max: float = 0.032  # largest lattice mean inflow (local max |u| reaches ~3.4 U)
    ramp_steps: int = 600  # sin^2 inflow ramp from rest (solver steps, <= spin-up); 0: impulsive
    kick: float = 0.3  # transverse kick relative to u_mean after the ramp (shortens spin-up)
    sponge: int = 0  # outlet sponge columns (stored grid); 0 = off (the outlet absorbs already)
    incompressible: bool = True  # He-Luo equilibrium: stored u = momentum, steady flux exact
    outlet: str = "characteristic"  # non-reflecting outlet: no quarter-wave acoustic resonance
    batch_size: int = 6  # trajectories per solver batch (compiled float32: ~70 / 85 MLUPS on 1 / 2 cores)
    dtype: str = "float32"  # solver precision; float64 changes the fields by < 0.4 % rms here
    compile: bool = True  # torch.compile the solver step (cold compile ~15 s; eager fallback)
    obstacle_boundary: str = "curved"  # "curved" (Bouzidi, exact shapes) or "staircase"
    mach_limit: float = 0.2  # warn when a trajectory's max |u| / c_s exceeds it
    min_amplitude: float = 0.05  # re-draw trajectories whose wake std(v) / U stays below it
    max_redraws: int = 2  # re-draw rounds per split (then keep, with a warning)

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise ValueError(f"DatasetConfig: {msg}")

        if self.ny < 8 or self.nx < 16:
            bad(f"grid {self.ny}x{self.nx} too small (need ny >= 8, nx >= 16)")
        if self.refine < 1:
            bad(f"refine must be >= 1, got {self.refine}")
        fr = Fraction(self.refine).limit_denominator(8)
        if (abs(float(fr) - self.refine) > 1e-9 or (self.ny * fr).denominator != 1
                or (self.nx * fr).denominator != 1):
            bad(f"refine {self.refine} must be p/q (q <= 8) with ny * refine and nx * refine "
                "whole numbers")
        for k in ("n_train", "n_test", "n_ood"):
            if getattr(self, k) < 0:
                bad(f"{k} must be >= 0")
        if self.n_train + self.n_test + self.n_ood == 0:
            bad("at least one trajectory needed")
        if self.n_snapshots < 1 or self.snapshot_every < 1 or self.spinup_steps < 0:
            bad("n_snapshots, snapshot_every must be >= 1 and spinup_steps >= 0")
        if self.ramp_steps < 0:
            bad(f"ramp_steps must be >= 0, got {self.ramp_steps}")
        if len(self.regimes) < 1:
            bad("regimes must not be empty")
        for k, v in self.regimes.items():
            if len(v) != 2 or not 0 < v[0] <= v[1]:
                bad(f"regime {k!r} needs [Re_min, Re_max] with 0 < Re_min <= Re_max, got {v}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            bad(f"device must be 'auto', 'cpu' or 'cuda[:n]', got {self.device!r}")
        if self.dtype not in ("float32", "float64"):
            bad(f"dtype must be float32 or float64, got {self.dtype!r}")
        if not 0 < self.blockage_range[0] <= self.blockage_range[1] < 0.5:
            bad(f"blockage_range {self.blockage_range} must lie in (0, 0.5)")
        if not 0 < self.u_mean_range[0] <= self.u_mean_range[1]:
            bad(f"u_mean_range {self.u_mean_range} invalid")
        if self.outlet not in ("fixed", "characteristic"):
            bad(f"outlet must be 'fixed' or 'characteristic', got {self.outlet!r}")
        if self.obstacle_boundary not in ("curved", "staircase"):
            bad(f"obstacle_boundary must be 'curved' or 'staircase', got "
                f"{self.obstacle_boundary!r}")
        if self.min_amplitude < 0 or self.max_redraws < 0:
            bad("min_amplitude and max_redraws must be >= 0")
        if self.tau_min <= 0.5 or self.batch_size < 1:
            bad("tau_min must be > 0.5 and batch_size >= 1")

    @property
    def dx(self) -> float:
        """Stored grid spacing in m."""
        return self.height_m / self.ny

    @property
    def dx_lattice(self) -> float:
        return self.dx / self.refine

    @property
    def dt_lattice(self) -> float:
        return U_LAT_REF * self.dx_lattice / U_REF

    @property
    def dt(self) -> float:
        """Time between stored snapshots in s."""
        return self.snapshot_every * self.dt_lattice


def full_config() -> DatasetConfig:
    """Full (GPU-scale) preset: 128 x 256 stored, solver at 256 x 512, 4000/500/500 trajectories.

    The lattice is 4x the demo's 64 rows with the same lattice velocities (acoustic scaling), so
    every step count is 4x the demo's and dt, the spin-up and the ramp cover the same physical
    times.  About 8e13 lattice updates: hours on one H100 with ``compile=True``; not for CPUs.
    """
    return DatasetConfig(name="channel_full", ny=128, nx=256, refine=2, n_train=4000, n_test=500,
                         n_ood=500, n_snapshots=100, snapshot_every=640, spinup_steps=56000,
                         ramp_steps=2400, batch_size=64, compile=True)
