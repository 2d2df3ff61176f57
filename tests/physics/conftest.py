from __future__ import annotations

import time

import pytest
import torch

from physweep.physics.dataset import DatasetConfig, generate_dataset

SMALL = dict(name="channel_test", ny=24, nx=48, n_train=3, n_test=3, n_ood=3, n_snapshots=8,
             snapshot_every=25, spinup_steps=1200,
             regimes={"steady": [10.0, 30.0], "periodic": [60.0, 80.0],
                      "irregular": [90.0, 110.0]})


def small_config(**kw) -> DatasetConfig:
    return DatasetConfig(**{**SMALL, **kw})


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    t0 = time.perf_counter()
    paths = generate_dataset(small_config(), out, progress=False)
    print(f"\nsmall dataset (9 traj, 24x48, 1375 steps) generated in "
          f"{time.perf_counter() - t0:.1f}s")
    return paths


def stir_and_measure_drift(solver, amplitude: float, seed: int, steps: int = 1000) -> float:
    """Start a closed box from random velocities, run ``steps``; return the worst relative mass
    drift over the batch."""
    b, n, m = solver.solid.shape
    g = torch.Generator().manual_seed(seed)
    ux = amplitude * torch.randn(b, n, m, generator=g, dtype=torch.float64)
    uy = amplitude * torch.randn(b, n, m, generator=g, dtype=torch.float64)
    solver.initialize(ux=ux, uy=uy)
    m0 = solver.fluid_mass()
    solver.step(steps)
    return float(((solver.fluid_mass() - m0) / m0).abs().max())
