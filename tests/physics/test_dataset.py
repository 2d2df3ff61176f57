from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
import xarray as xr

from physweep.physics.dataset import (
    DatasetConfig,
    full_config,
    generate_dataset,
    load_split,
    sample_points,
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
        for key in ("seed", "dx", "dt", "regime_names", "solver", "code_version", "packages"):
            assert key in ds.attrs, key
        assert json.loads(ds.attrs["regime_names"]) == ["steady", "periodic", "irregular"]
        assert float(ds["y"][-1] + ds["y"][0]) == pytest.approx(0.41, rel=1e-6)


def test_load_split_fields(small_dataset):
    s = load_split(small_dataset["train"])
    assert isinstance(s, FlowSplit)
    assert s.fields.shape == (3, 8, 3, 24, 48) and s.fields.dtype == torch.float32
    assert s.mask.dtype == torch.bool and s.mask.shape == (3, 24, 48)
    assert s.coords.shape == (24, 48, 2) and s.inflow.shape == (3, 24)
    assert s.regime.tolist() and set(s.regime.tolist()) <= {0, 1, 2}
    assert len(s.geometry) == 3 and s.reynolds.shape == (3,)
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
            assert np.array_equal(da[name].values, db[name].values), name
    c = generate_dataset(small_config(n_train=2, n_test=0, n_ood=0, n_snapshots=2,
                                      snapshot_every=5, spinup_steps=20, ny=16, nx=32, seed=1),
                         tmp_path / "c", progress=False)["train"]
    with xr.open_dataset(a) as da, xr.open_dataset(c) as dc:
        assert not np.array_equal(da["mask"].values, dc["mask"].values)


@pytest.mark.parametrize("kw", [dict(ny=4), dict(refine=0), dict(n_train=-1),
                                dict(regimes={"a": [5.0, 1.0]}), dict(device="tpu"),
                                dict(blockage_range=(0.3, 0.6)), dict(dtype="float16"),
                                dict(n_train=0, n_test=0, n_ood=0), dict(outlet="x")])
def test_config_validation(kw):
    with pytest.raises(ValueError, match="DatasetConfig"):
        DatasetConfig(**kw)


def test_full_config_sizes():
    cfg = full_config()
    assert (cfg.ny, cfg.nx, cfg.refine) == (128, 256, 2)
    assert cfg.n_train >= 1000 and len(cfg.regimes) >= 3
    assert cfg.dt == pytest.approx(DatasetConfig().dt)


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
def test_demo_dataset_regimes_differ(tmp_path):
    """The demo default config generates three regimes that really differ. (Its generation time
    is printed here and measured by the workflow: results/benchmarks/data/<dataset>.tsv.)"""
    t0 = time.perf_counter()
    paths = generate_dataset(DatasetConfig(), tmp_path, progress=False)
    elapsed = time.perf_counter() - t0
    sizes = {k: p.stat().st_size / 1e6 for k, p in paths.items()}
    print(f"\ndemo dataset: {elapsed:.1f}s, sizes MB {sizes}")
    s = load_split(paths["train"])
    std_v = s.fields[:, :, 1].std(1).mean((1, 2)) / s.inflow.mean(1)
    by = {n: std_v[s.regime == i] for i, n in enumerate(s.regime_names)}
    print({n: [round(float(x), 4) for x in v] for n, v in by.items()})
    assert float(by["steady"].max()) < 0.01 < float(by["irregular"].min())
    assert float(by["periodic"].median()) > 0.01
