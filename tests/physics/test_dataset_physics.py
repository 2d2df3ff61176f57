"""What the generated flows do: measured regimes, Mach number, start-up, resolution.

Fast tests use synthetic signals or a small lattice (24 x 48, refine 1, eager); the slow ones
run the demo's own physical setup (DatasetConfig defaults).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
import xarray as xr

from physweep.physics import dataset as D
from physweep.physics.dataset import (
    REGIME_LABELS,
    DatasetConfig,
    classify,
    flow_measures,
    generate_dataset,
    load_split,
    solver_description,
)

# ------------------------------------------------------------------ measures on known signals
N, DT, DIAM, U = 400, 1.0, 10.0, 1.0  # 400 samples; St = f * 10 / 1
T = np.arange(N)[:, None] * DT
PHASE = np.linspace(0.0, 2.0, 6)[None, :]  # six "cells" at different phases


def _m(v):
    return flow_measures(v, DT, DIAM, U)


def test_measures_limit_cycle():
    """A (non-sinusoidal) periodic wake signal: St of the fundamental, periodicity ~1."""
    f = 0.3 / DIAM  # St 0.3, 12 cycles per record
    v = 0.2 * np.sin(2 * math.pi * f * T + PHASE) + 0.05 * np.sin(4 * math.pi * f * T + 2 * PHASE)
    m = _m(v)
    assert m["strouhal"] == pytest.approx(0.3, rel=0.005)
    assert m["periodicity"] > 0.995
    assert m["amplitude"] == pytest.approx(math.sqrt(0.2**2 / 2 + 0.05**2 / 2), rel=0.02)
    assert m["envelope"] == pytest.approx(1.0, abs=0.05) and m["drift"] < 0.05
    assert m["concentration"] > 0.95
    assert classify(m) == "periodic"


def test_measures_growth_is_transient():
    """Shedding onset: a clean oscillation whose amplitude doubles over the record."""
    f = 0.3 / DIAM
    v = 0.1 * np.exp(T / N * math.log(2.0)) * np.sin(2 * math.pi * f * T + PHASE)
    m = _m(v)
    assert m["periodicity"] > 0.98 and m["envelope"] > 1.25
    assert classify(m) == "transient"


def test_measures_monotone_relaxation_is_transient():
    """An impulsive-start wake settling without oscillating: no St, label transient."""
    v = 0.3 * np.exp(-T / 80.0) * np.cos(PHASE)
    m = _m(v)
    assert math.isnan(m["strouhal"])
    assert classify(m) == "transient"


def test_measures_incommensurate_is_irregular():
    """Two incommensurate frequencies of similar strength: not a limit cycle."""
    f = 0.3 / DIAM
    v = (0.2 * np.sin(2 * math.pi * f * T + PHASE)
         + 0.15 * np.sin(2 * math.pi * f * (math.sqrt(2.0) + 0.1) * T + 3 * PHASE))
    m = _m(v)
    assert m["periodicity"] < 0.98
    assert classify(m) == "irregular"


def test_measures_steady():
    m = _m(np.ones((N, 6)) * 0.3 + 1e-6 * np.sin(T))
    assert m["amplitude"] < 1e-3 and classify(m) == "steady"


# ------------------------------------------------------------------ small simulated dataset
SMALL = dict(name="channel_small", ny=24, nx=48, refine=1, n_train=2, n_test=0, n_ood=0,
             n_snapshots=30, snapshot_every=80, spinup_steps=5000, ramp_steps=300,
             regimes={"shedding": [130.0, 160.0]}, batch_size=2, compile=False,
             dtype="float64", max_redraws=0, seed=3)


def small(**kw) -> DatasetConfig:
    return DatasetConfig(**{**SMALL, **kw})


@pytest.fixture(scope="module")
def shedding(tmp_path_factory):
    t0 = time.perf_counter()
    path = generate_dataset(small(), tmp_path_factory.mktemp("shed"), progress=False)["train"]
    print(f"\nsmall shedding set (2 traj, 24x48, 7320 steps): {time.perf_counter() - t0:.1f}s")
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    return path, ds


def _measures(ds: xr.Dataset, i: int) -> dict[str, float]:
    return {"strouhal": float(ds["strouhal"][i]), "amplitude": float(ds["amplitude"][i]),
            "periodicity": float(ds["periodicity"][i]), "envelope": float(ds["envelope"][i]),
            "drift": float(ds["drift"][i])}


def test_labels_follow_the_measures(shedding):
    """The stored label is what the stored measures say (not the Re band the draw came from),
    and every measure carries units and a long name."""
    _, ds = shedding
    names = json_names(ds)
    assert names == list(REGIME_LABELS)
    for i in range(ds.sizes["traj"]):
        m = _measures(ds, i)
        assert str(ds["regime"][i].values) == classify(m), (i, m)
        print(f"\ntraj {i}: Re {float(ds['reynolds'][i]):.0f} St {m['strouhal']:.3f} "
              f"A {m['amplitude']:.3f} periodicity {m['periodicity']:.3f} "
              f"Mach {float(ds['mach_max'][i]):.3f} -> {ds['regime'][i].values}")
    for name in ("strouhal", "amplitude", "periodicity", "envelope", "drift",
                 "spectral_concentration", "mach_max"):
        assert {"units", "long_name"} <= set(ds[name].attrs), name
    split = load_split(shedding[0])
    assert split.strouhal.shape == (2,) and split.amplitude.shape == (2,)
    assert torch.allclose(split.amplitude, torch.from_numpy(ds["amplitude"].values))


def json_names(ds: xr.Dataset) -> list[str]:
    import json

    return json.loads(ds.attrs["regime_names"])


def test_every_trajectory_moves(shedding):
    """Nothing to predict is ruled out: the fields' temporal std over the record is a sizeable
    share of the inflow speed in every trajectory, and shedding gives a finite St."""
    _, ds = shedding
    u_mean = ds["inflow"].mean("y").values
    for i in range(ds.sizes["traj"]):
        fluid = ds["mask"][i].values.astype(bool)
        std = np.sqrt(np.mean([ds[c][i].values.std(0)[fluid] ** 2 for c in ("u", "v")]))
        assert std / u_mean[i] > 0.05, (i, std / u_mean[i])
        assert math.isfinite(float(ds["strouhal"][i]))
        assert 0.2 < float(ds["strouhal"][i]) < 0.5


def test_mach_bounded_and_measured(shedding):
    """max |u| / c_s over the lattice and every probe time stays <= 0.2, and is at least what
    the stored snapshots show (refine 1: stored grid = lattice)."""
    _, ds = shedding
    cfg = small()
    vel = cfg.dx_lattice / cfg.dt_lattice
    cs = 1.0 / math.sqrt(3.0)
    for i in range(ds.sizes["traj"]):
        snap = np.sqrt(ds["u"][i].values ** 2 + ds["v"][i].values ** 2).max() / vel / cs
        assert snap <= float(ds["mach_max"][i]) + 1e-5
        assert float(ds["mach_max"][i]) <= 0.2


def test_solver_attribute_describes_the_scheme(shedding):
    _, ds = shedding
    text = ds.attrs["solver"]
    assert text == solver_description(small())
    for word in ("D2Q9", "BGK", "He-Luo incompressible", "Bouzidi", "characteristic",
                 "non-equilibrium bounce-back", "float64", "refine 1", "sin^2 inflow ramp"):
        assert word in text, word
    other = solver_description(small(obstacle_boundary="staircase", outlet="fixed",
                                     incompressible=False, refine=2, dtype="float32",
                                     ramp_steps=0))
    for word in ("half-way bounce-back (staircase)", "rho = 1", "standard second-order",
                 "refine 2", "float32", "impulsive start"):
        assert word in other, word
    assert "Bouzidi" not in other and "He-Luo" not in other


def test_ramped_start_avoids_the_impulsive_mach_peak():
    """The impulsive start's acoustic transient raises the local Mach number well above the
    developed flow's; the sin^2 inflow ramp from rest does not."""
    cfg_i = small(ramp_steps=0, spinup_steps=600, n_snapshots=1)
    cfg_r = small(ramp_steps=300, spinup_steps=600, n_snapshots=1)
    plans = D._plan_split(cfg_i, "train", 2)
    mach_i = D._simulate(cfg_i, plans, torch.device("cpu"), None)["mach"]
    mach_r = D._simulate(cfg_r, plans, torch.device("cpu"), None)["mach"]
    print(f"\nmax Mach in the first 600 steps: impulsive {mach_i.tolist()}, ramp {mach_r.tolist()}")
    assert bool((mach_r < 0.9 * mach_i).all())


def test_compile_failure_falls_back_to_eager(monkeypatch):
    """Generation does not depend on a working torch.compile: a failing compiled step warns once
    and the run continues eagerly with the same result."""
    from physweep.physics import lbm

    def broken(fn, **kw):
        def raise_(*a, **k):
            raise RuntimeError("no C++ compiler")
        return raise_

    cfg = small(n_snapshots=2, spinup_steps=200, ramp_steps=50, snapshot_every=20)
    plans = D._plan_split(cfg, "train", 2)
    eager = D._simulate(cfg, plans, torch.device("cpu"), None)
    monkeypatch.setattr(lbm, "_COMPILE_FAILED", False)
    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(UserWarning, match="continuing eagerly"):
        fallback = D._simulate(DatasetConfig(**{**SMALL, **dict(
            n_snapshots=2, spinup_steps=200, ramp_steps=50, snapshot_every=20, compile=True)}),
            plans, torch.device("cpu"), None)
    assert lbm._COMPILE_FAILED
    assert torch.equal(eager["u"], fallback["u"]) and torch.equal(eager["p"], fallback["p"])


def test_refined_lattice_has_the_same_geometry():
    """All draws are made on the stored grid: refine changes the lattice, not the flow."""
    a = D._plan_split(small(), "train", 2)
    b = D._plan_split(small(refine=2), "train", 2)
    for pa, pb in zip(a, b, strict=True):
        assert pa["shapes"] == pb["shapes"] and pa["re"] == pb["re"]
        assert pa["u_lat"] == pb["u_lat"] and pa["d"] == pb["d"]
    fine = D.rasterize(a[0]["shapes"], 24, 48, 2).float()
    coarse = D.rasterize(a[0]["shapes"], 24, 48, 1).float()
    # solid fraction agrees to within the staircase error of the coarse lattice
    assert abs(float(fine.mean()) - float(coarse.mean())) < 0.01


# ------------------------------------------------------------------ the demo's physics (slow)
@pytest.mark.slow
def test_strouhal_converged_against_refined_lattice():
    """St of the demo's physical setup (DatasetConfig defaults: 64 x 128 lattice, D ~ 20 cells)
    within 3 % of the same flows on a 2x refined lattice (128 x 256, steps doubled, same u_lat:
    same Re, same physical times), for the periodic trajectories of a small draw."""
    base = DatasetConfig(n_train=3, n_test=0, n_ood=0, max_redraws=0)
    fine = DatasetConfig(n_train=3, n_test=0, n_ood=0, max_redraws=0, refine=2 * base.refine,
                         spinup_steps=2 * base.spinup_steps,
                         snapshot_every=2 * base.snapshot_every, ramp_steps=2 * base.ramp_steps)
    assert fine.dt == pytest.approx(base.dt)
    plans = D._plan_split(base, "train", 3)
    t0 = time.perf_counter()
    res = {}
    for cfg in (base, fine):
        arr = D._simulate(cfg, plans, torch.device("cpu"), None)
        res[cfg.refine] = D._measure(cfg, plans, arr)
    print(f"\nrefinement pair: {time.perf_counter() - t0:.0f}s")
    checked = 0
    for p, m1, m2 in zip(plans, res[base.refine], res[fine.refine], strict=True):
        err = m1["strouhal"] / m2["strouhal"] - 1.0
        print(f"{p['geometry']:>16} Re {p['re']:.0f}: St {m1['strouhal']:.4f} (lattice "
              f"{base.refine:g}x) vs {m2['strouhal']:.4f} ({fine.refine:g}x): {100 * err:+.2f}% "
              f"[{m1['regime']} / {m2['regime']}]")
        if m1["regime"] == m2["regime"] == "periodic":
            assert abs(err) <= 0.03
            checked += 1
    assert checked >= 1
