"""Evaluation samples (start phases, regime coverage) and the baselines stored in every eval file:
persistence, linear extrapolation, the reference model's errors, skill."""

import math

import numpy as np
import pytest
import torch
import xarray as xr
from physweep_testkit import synthetic_split, tiny_spec, write_dataset, write_split

from physweep.evaluate import metrics
from physweep.evaluate.baselines import (
    eval_samples,
    linear_extrapolation,
    persistence,
    regime_round_robin,
    start_snapshots,
)
from physweep.evaluate.suite import EvalSuite, evaluate_checkpoint
from physweep.model.surrogate import load_checkpoint, save_checkpoint
from physweep.train.loop import train_run

SUITE = EvalSuite("small", splits=["test"], n_traj=3, horizon=3, long_horizon_from=2,
                  ensemble_members=2, points=48, starts=3, seed=5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    data = write_dataset(root / "data")
    train_run(tiny_spec(), data, root / "c.pt", root / "log.nc")
    return data, root / "c.pt"


def _coords(path):
    with xr.open_dataset(path) as ds:
        return [(str(a), int(b), int(c)) for a, b, c in zip(
            ds["split"].values, ds["traj_index"].values, ds["start"].values, strict=True)]


# ----------------------------------------------------------------------------- samples


def test_start_snapshots_are_seeded_stratified_and_leave_a_previous_state():
    a = start_snapshots(40, 16, 4, seed=0, split="test", traj_index=3)
    assert a == start_snapshots(40, 16, 4, seed=0, split="test", traj_index=3)
    assert len(a) == 4 and a == sorted(set(a)) and a[0] >= 1 and a[-1] <= 40 - 1 - 16
    # one start per stratum of [1, 23]: [1, 5], [6, 11], [12, 17], [18, 23]
    assert [1 <= a[0] <= 5, 6 <= a[1] <= 11, 12 <= a[2] <= 17, 18 <= a[3] <= 23] == [True] * 4
    draws = {tuple(start_snapshots(40, 16, 4, seed=s, split="test", traj_index=3))
             for s in range(20)}
    assert len(draws) > 10  # the seed matters ...
    assert start_snapshots(40, 16, 4, 0, "ood", 3) != a or start_snapshots(40, 16, 4, 0, "ood",
                                                                           4) != a
    # ... and when the range is shorter than `starts`, every snapshot in it is used
    assert start_snapshots(12, 8, 4, 0, "test", 0) == [1, 2, 3]
    with pytest.raises(ValueError, match="needs more than 9 snapshots"):
        start_snapshots(9, 8, 1, 0, "test", 0)


def test_small_eval_covers_every_regime_of_a_regime_sorted_split():
    regime = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])  # stored sorted by regime, like the data
    assert regime_round_robin(regime, 3) == [0, 3, 5]
    assert regime_round_robin(regime, 4) == [0, 1, 3, 5]
    assert regime_round_robin(regime, 6) == [0, 1, 3, 4, 5, 6]
    assert regime_round_robin(regime, None) == list(range(8))
    split = synthetic_split(n_traj=6)
    split.regime = torch.tensor([0, 0, 0, 1, 1, 1])
    samples = eval_samples("test", split, n_traj=2, starts=2, horizon=3, seed=0)
    assert {s.regime for s in samples} == {"laminar", "shedding"}


def test_start_phases_identical_across_evaluations(trained, tmp_path):
    data, ckpt = trained
    c = load_checkpoint(ckpt)
    c["ema"]["surrogate"]["decoder.change_head.bias"].add_(0.01)  # another model, same suite
    save_checkpoint(tmp_path / "other.pt", c)
    evaluate_checkpoint(ckpt, data, SUITE, tmp_path / "a.nc", device="cpu")
    evaluate_checkpoint(tmp_path / "other.pt", data, SUITE, tmp_path / "b.nc", device="cpu")
    a, b = _coords(tmp_path / "a.nc"), _coords(tmp_path / "b.nc")
    assert a == b and len(a) == 3 * 3
    assert len({s for _, _, s in a}) > 1  # several phases, not all at one snapshot
    with xr.open_dataset(tmp_path / "a.nc") as da, xr.open_dataset(tmp_path / "b.nc") as db:
        assert np.array_equal(da["nrmse_persistence"], db["nrmse_persistence"])
        assert not np.array_equal(da["nrmse"], db["nrmse"])
        assert set(da["regime"].values) == {"laminar", "shedding"}


# ----------------------------------------------------------------------------- baselines


def test_baseline_forecasts():
    f = torch.arange(5.0).view(5, 1, 1, 1) * torch.ones(5, 2, 2, 3)  # x_t = t
    assert persistence(f, 2, 2)[:, 0, 0, 0].tolist() == [2.0, 2.0]
    assert linear_extrapolation(f, 2, 2)[:, 0, 0, 0].tolist() == [3.0, 4.0]
    with pytest.raises(ValueError):
        linear_extrapolation(f, 0, 2)


def _linear_in_time(n_traj=3, n_time=10):
    """A split whose fields change linearly in time: linear extrapolation is exact."""
    split = synthetic_split(n_traj=n_traj, n_time=n_time, seed=3)
    base, slope = split.fields[:, :1], 0.05 * (split.fields[:, 1:2] - split.fields[:, :1] + 0.3)
    t = torch.arange(n_time, dtype=torch.float32).view(1, -1, 1, 1, 1)
    split.fields = ((base + t * slope) * split.mask[:, None, None]).float()
    return split


def test_linear_baseline_is_exact_on_a_linear_split(trained, tmp_path):
    _, ckpt = trained
    data = tmp_path / "lin"
    data.mkdir()
    write_split(_linear_in_time(), data / "test.nc")
    out = evaluate_checkpoint(ckpt, data, SUITE, tmp_path / "e.nc", device="cpu")
    assert out["nrmse_linear"] == pytest.approx(0.0, abs=1e-5)
    assert out["nrmse_persistence"] > 0.01
    with xr.open_dataset(tmp_path / "e.nc") as ds:
        assert np.abs(ds["nrmse_linear_channel"].values).max() < 1e-5
        # persistence misses by s * slope at lead s: its error grows with the lead
        p = ds["nrmse_persistence"].values.mean(axis=0)
        assert p[0] < p[1] < p[2]


def test_reference_copied_per_sample_and_mismatch_refused(trained, tmp_path):
    data, ckpt = trained
    c = load_checkpoint(ckpt)
    c["ema"]["surrogate"]["decoder.change_head.bias"].add_(0.05)
    save_checkpoint(tmp_path / "ref.pt", c)
    evaluate_checkpoint(tmp_path / "ref.pt", data, SUITE, tmp_path / "ref.nc", device="cpu")
    out = evaluate_checkpoint(ckpt, data, SUITE, tmp_path / "e.nc", device="cpu",
                              reference=tmp_path / "ref.nc")
    with xr.open_dataset(tmp_path / "ref.nc") as ref, xr.open_dataset(tmp_path / "e.nc") as ds:
        assert np.array_equal(ds["nrmse_reference"].values, ref["nrmse"].values)
        assert out["nrmse_reference"] == pytest.approx(ref.attrs["nrmse"])
        assert ds.attrs["nrmse_reference"] == pytest.approx(ref.attrs["nrmse"])
        assert ds.attrs["reference"] == str(tmp_path / "ref.nc")
        assert out["nrmse_reference_regime_laminar"] == pytest.approx(
            ref.attrs["nrmse_regime_laminar"])
    assert out["skill_reference"] == pytest.approx(1 - out["nrmse"] / out["nrmse_reference"])
    # other starts, other trajectories or other leads: a clear error, no file written
    for bad in (dict(starts=2), dict(n_traj=2), dict(seed=6), dict(horizon=2)):
        suite = EvalSuite(**{**SUITE.__dict__, **bad})
        with pytest.raises(ValueError, match="same suite"):
            evaluate_checkpoint(ckpt, data, suite, tmp_path / "x.nc", device="cpu",
                                reference=tmp_path / "ref.nc")
        assert not (tmp_path / "x.nc").exists()
    old = tmp_path / "old.nc"  # an eval file of the previous format (dims traj, lead)
    xr.Dataset({"nrmse": (("traj", "lead"), np.zeros((2, 3)))},
               coords={"lead": [1, 2, 3]}).to_netcdf(old)
    with pytest.raises(ValueError, match="not a per-sample eval file"):
        evaluate_checkpoint(ckpt, data, SUITE, tmp_path / "x.nc", device="cpu", reference=old)


def test_skill():
    assert metrics.skill(0.2, 0.4) == pytest.approx(0.5)
    assert metrics.skill(0.4, 0.4) == 0.0 and metrics.skill(0.8, 0.4) == pytest.approx(-1.0)
    assert math.isnan(metrics.skill(0.1, 0.0))  # an exact reference: no skill to measure
    assert math.isnan(metrics.skill(0.1, math.nan))
    np.testing.assert_allclose(metrics.skill(np.array([0.1, 0.3]), np.array([0.2, 0.2])),
                               [0.5, -0.5])

