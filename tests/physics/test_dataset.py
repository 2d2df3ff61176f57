from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
import xarray as xr

from physweep.physics.dataset import (
    REGIME_LABELS,
    DatasetConfig,
    classify,
    full_config,
    generate_dataset,
    load_split,
    sample_points,
    solver_description,
)
from physweep.physics.flowsplit import FlowSplit

from .conftest import small_config


def test_layout_and_units(small_dataset):
    assert set(small_dataset) == {"train", "test", "ood"}
    with xr.open_dataset(small_dataset["train"]) as ds:
        assert ds["u"].dims == ("traj", "time", "y", "x")
        assert ds["mask"].dims == ("traj", "y", "x") and ds["mask"].dtype == np.int8
        assert ds["inflow"].dims == ("traj", "y")
        for name in list(ds.data_vars) + ["x", "y", "time"]:
            assert "units" in ds[name].attrs, name
        assert ds["u"].attrs["units"] == "m s-1" and ds["x"].attrs["units"] == "m"
        for key in ("seed", "dx", "dt", "regime_names", "solver", "code_version", "packages",
                    "re_bands"):
            assert key in ds.attrs, key
        # labels are measured: the fixed label set, whatever Re bands the config draws from
        assert json.loads(ds.attrs["regime_names"]) == list(REGIME_LABELS)
        assert set(ds["regime"].values) <= set(REGIME_LABELS)
        assert set(ds["re_band"].values) <= {"steady", "periodic", "irregular"}
        assert ds.attrs["solver"] == solver_description(small_config())
        for name in ("strouhal", "amplitude", "mach_max", "periodicity", "envelope"):
            assert ds[name].dims == ("traj",) and "long_name" in ds[name].attrs, name
        assert float(ds["y"][-1] + ds["y"][0]) == pytest.approx(0.41, rel=1e-6)


def test_load_split_fields(small_dataset):
    s = load_split(small_dataset["train"])
    assert isinstance(s, FlowSplit)
    assert s.fields.shape == (3, 8, 3, 24, 48) and s.fields.dtype == torch.float32
    assert s.mask.dtype == torch.bool and s.mask.shape == (3, 24, 48)
    assert s.coords.shape == (24, 48, 2) and s.inflow.shape == (3, 24)
    assert s.regime.tolist() and set(s.regime.tolist()) <= {0, 1, 2}
    assert len(s.geometry) == 3 and s.reynolds.shape == (3,)
    assert s.strouhal.shape == (3,) and s.amplitude.shape == (3,)
    assert bool((s.amplitude >= 0).all())
    assert s.dt > 0 and s.dx == pytest.approx(0.41 / 24)
    assert torch.isfinite(s.fields).all()
    assert (s.fields[:, :, 0][~s.mask.unsqueeze(1).expand(-1, 8, -1, -1)] == 0).all()
    # inflow in m/s around the configured mean range
    assert 0.5 < float(s.inflow.mean(1).min()) and float(s.inflow.mean(1).max()) < 1.0


def test_splits_geometries(small_dataset):
    train = load_split(small_dataset["train"])
    ood = load_split(small_dataset["ood"])
    train_shapes = {p for g in train.geometry for p in g.split("+")}
    assert train_shapes <= {"circle", "square", "ellipse"}
    for g in ood.geometry:
        parts = g.split("+")
        assert "triangle" in parts or len(parts) == 3, g
    test = load_split(small_dataset["test"])
    assert not torch.equal(test.mask, train.mask)


def test_deterministic(tmp_path):
    cfg = small_config(n_train=2, n_test=0, n_ood=0, n_snapshots=2, snapshot_every=5,
                       spinup_steps=20, ny=16, nx=32)
    a = generate_dataset(cfg, tmp_path / "a", progress=False)["train"]
    b = generate_dataset(cfg, tmp_path / "b", progress=False)["train"]
    with xr.open_dataset(a) as da, xr.open_dataset(b) as db:
        for name in da.data_vars:
            assert np.array_equal(da[name].values, db[name].values,
                                  equal_nan=da[name].dtype.kind == "f"), name
    c = generate_dataset(small_config(n_train=2, n_test=0, n_ood=0, n_snapshots=2,
                                      snapshot_every=5, spinup_steps=20, ny=16, nx=32, seed=1),
                         tmp_path / "c", progress=False)["train"]
    with xr.open_dataset(a) as da, xr.open_dataset(c) as dc:
        assert not np.array_equal(da["mask"].values, dc["mask"].values)


@pytest.mark.parametrize("kw", [dict(ny=4), dict(refine=0), dict(n_train=-1),
                                dict(regimes={"a": [5.0, 1.0]}), dict(device="tpu"),
                                dict(blockage_range=(0.3, 0.6)), dict(dtype="float16"),
                                dict(n_train=0, n_test=0, n_ood=0), dict(outlet="x"),
                                dict(obstacle_boundary="x"), dict(refine=1.3),
                                dict(ny=30, refine=1.25), dict(ramp_steps=-1),
                                dict(min_amplitude=-1.0)])
def test_config_validation(kw):
    with pytest.raises(ValueError, match="DatasetConfig"):
        DatasetConfig(**kw)


def test_full_config_sizes():
    cfg = full_config()
    demo = DatasetConfig()
    assert (cfg.ny, cfg.nx, cfg.refine) == (128, 256, 2)
    assert cfg.n_train >= 1000 and cfg.regimes == demo.regimes
    # same physical times: snapshot spacing, spin-up and ramp
    assert cfg.dt == pytest.approx(demo.dt)
    assert cfg.spinup_steps * cfg.dt_lattice == pytest.approx(demo.spinup_steps * demo.dt_lattice)
    assert cfg.ramp_steps * cfg.dt_lattice == pytest.approx(demo.ramp_steps * demo.dt_lattice)


def test_full_preset_data_is_the_full_dataset(repo_root):
    """The full preset generates ``full_config``'s 128 x 256 dataset (its data section once
    named the dataset only, which gave the demo's 32 x 64 grid)."""
    from physweep.configs import from_dict
    from physweep.io import load_yaml

    preset = load_yaml((repo_root / "config" / "presets" / "full.yaml").read_text())
    assert from_dict(DatasetConfig, dict(preset["data"])) == full_config()


def test_sample_points():
    mask = torch.ones(6, 8, dtype=torch.bool)
    mask[2:4, 3:5] = False
    all_idx = sample_points(mask)
    assert all_idx.numel() == 44 and mask.view(-1)[all_idx].all()
    g = torch.Generator().manual_seed(0)
    idx = sample_points(mask, 10, g)
    assert idx.numel() == 10 and idx.unique().numel() == 10 and mask.view(-1)[idx].all()
    assert torch.equal(idx, sample_points(mask, 10, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError):
        sample_points(mask, 100)


@pytest.mark.slow
def test_demo_dataset(tmp_path):
    """The demo default config: every trajectory moves (no exactly steady flow), max Mach <= 0.2,
    labels follow the measures, >= 48 snapshots covering several shedding periods of 10-16
    snapshots.  (Its generation time is printed here and measured by the workflow:
    results/benchmarks/data/<dataset>.tsv.)"""
    cfg = DatasetConfig()
    t0 = time.perf_counter()
    paths = generate_dataset(cfg, tmp_path, progress=False)
    elapsed = time.perf_counter() - t0
    sizes = {k: round(p.stat().st_size / 1e6, 1) for k, p in paths.items()}
    print(f"\ndemo dataset: {elapsed:.1f}s ({torch.get_num_threads()} threads), sizes MB {sizes}")
    assert cfg.n_snapshots >= 48
    periods = []
    for split, path in paths.items():
        with xr.open_dataset(path) as ds:
            ds = ds.load()
        s = load_split(path)
        u_mean = s.inflow.mean(1)
        for i in range(s.n_traj):
            m = {k: float(ds[k][i]) for k in ("strouhal", "amplitude", "periodicity",
                                               "envelope", "drift")}
            label = str(ds["regime"][i].values)
            fl = s.mask[i]
            rel_std = float(s.fields[i, :, :2].std(0)[:, fl].pow(2).mean().sqrt() / u_mean[i])
            print(f"{split:>5} {s.geometry[i]:>22} Re {float(s.reynolds[i]):5.1f} "
                  f"St {m['strouhal']:.3f} A {m['amplitude']:.3f} "
                  f"per {m['periodicity']:.3f} env {m['envelope']:.2f} "
                  f"Mach {float(ds['mach_max'][i]):.3f} std/U {rel_std:.3f} -> {label}")
            assert float(ds["mach_max"][i]) <= 0.2
            assert rel_std > 0.04, "a trajectory with (almost) nothing to predict"
            assert label == classify(m) and label != "steady"
            if label == "periodic":  # period = D / (St U), in snapshots
                periods.append(float(ds["diameter"][i]) / (m["strouhal"] * float(u_mean[i]))
                               / cfg.dt)
    print(f"shedding period (periodic trajectories): median {np.median(periods):.1f} snapshots, "
          f"range {min(periods):.1f}-{max(periods):.1f}")
    assert 10 <= np.median(periods) <= 16
    assert cfg.n_snapshots >= 3 * np.median(periods)
