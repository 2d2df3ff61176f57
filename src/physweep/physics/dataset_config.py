"""The dataset's configuration (torch-free, so config validation at parse time stays cheap).

The generator and the meaning of every field: :mod:`physweep.physics.dataset`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

U_REF = 1.0  # m/s that maps to U_LAT_REF
U_LAT_REF = 0.1  # lattice velocity of U_REF (Mach 0.17 at the centreline maximum)
ID_SHAPES = ("circle", "square", "ellipse")
SPLITS = ("train", "test", "ood")


def _default_regimes() -> dict[str, list[float]]:
    return {"steady": [10.0, 40.0], "periodic": [80.0, 110.0], "irregular": [130.0, 170.0]}


@dataclass(frozen=True)
class DatasetConfig:
    name: str = "channel_demo"  # directory / label of the dataset
    ny: int = 32  # stored rows: 32 keeps the demo within 90 s on 2 CPU cores
    nx: int = 64  # stored columns: channel length 2 H, room for a wake behind the obstacles
    refine: int = 1  # solver lattice = refine x stored grid (block-averaged); 1 for the CPU demo
    n_train: int = 24  # enough trajectories for the demo to train on all three regimes
    n_test: int = 6  # two per regime, new in-distribution geometries
    n_ood: int = 6  # unseen geometries (triangles, three obstacles)
    n_snapshots: int = 40  # ~3 shedding periods at the stored cadence
    snapshot_every: int = 30  # solver steps between snapshots (~14 per shedding period)
    spinup_steps: int = 3500  # ~4 flow-throughs: shedding established (with the kick)
    regimes: dict[str, list[float]] = field(default_factory=_default_regimes)  # label -> Re range
    seed: int = 0  # all geometry/regime/inflow draws derive from it
    device: str = "auto"  # "auto" -> cuda if available else cpu
    height_m: float = 0.41  # physical channel height (Schäfer–Turek)
    u_mean_range: tuple[float, float] = (0.6, 0.8)  # mean inflow speed draw, m/s
    blockage_range: tuple[float, float] = (0.25, 0.35)  # obstacle size D / H draw
    max_blockage: float = 0.4  # max fraction of any column covered by obstacles (stacked ones)
    tau_min: float = 0.512  # smallest BGK relaxation time allowed (stability on coarse lattices)
    u_lat_max: float = 0.09  # largest lattice mean inflow (Mach 0.23 at the centreline)
    kick: float = 0.1  # transverse kick amplitude relative to u_mean (shortens spin-up)
    sponge: int = 0  # outlet sponge columns (stored grid); 0 = off (the outlet absorbs already)
    incompressible: bool = True  # He-Luo equilibrium: stored u = momentum, steady flux exact
    outlet: str = "characteristic"  # non-reflecting outlet: no quarter-wave acoustic resonance
    batch_size: int = 6  # trajectories per solver batch; small ones stay in CPU cache (6: 32 s)
    dtype: str = "float64"  # solver precision (float32 drifts mass); stored as float32
    compile: bool = False  # torch.compile the solver step (cold compile ~20 s on CPU)

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise ValueError(f"DatasetConfig: {msg}")

        if self.ny < 8 or self.nx < 16:
            bad(f"grid {self.ny}x{self.nx} too small (need ny >= 8, nx >= 16)")
        if self.refine < 1:
            bad(f"refine must be >= 1, got {self.refine}")
        for k in ("n_train", "n_test", "n_ood"):
            if getattr(self, k) < 0:
                bad(f"{k} must be >= 0")
        if self.n_train + self.n_test + self.n_ood == 0:
            bad("at least one trajectory needed")
        if self.n_snapshots < 1 or self.snapshot_every < 1 or self.spinup_steps < 0:
            bad("n_snapshots, snapshot_every must be >= 1 and spinup_steps >= 0")
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

    Steps scale with the lattice (8x the demo's 32 rows): spin-up and snapshot cadence cover the
    same physical time per snapshot as the demo times 8 / 8 = 1, i.e. dt is identical.  About 5e13
    lattice updates: hours on one H100 with ``compile=True``; not meant for CPUs.
    """
    return DatasetConfig(name="channel_full", ny=128, nx=256, refine=2, n_train=4000, n_test=500,
                         n_ood=500, n_snapshots=100, snapshot_every=240, spinup_steps=28000,
                         batch_size=64, compile=True, tau_min=0.505)
