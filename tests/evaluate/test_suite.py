import math

import numpy as np
import pytest
import torch
import xarray as xr
from physweep_testkit import synthetic_split, tiny_spec, write_dataset

from physweep.evaluate.rollout import rollout_ensemble
from physweep.evaluate.suite import SUMMARY_KEYS, EvalSuite, evaluate_checkpoint
from physweep.model.corrector import CorrectorConfig, load_denoiser
from physweep.model.surrogate import load_checkpoint, load_model, save_checkpoint
from physweep.select.scores import read_eval
from physweep.train.loop import train_run

SUITE = EvalSuite("small", splits=["test", "ood"], n_traj=2, horizon=4, long_horizon_from=3,
                  ensemble_members=3, points=48, starts=2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = write_dataset(root / "data")
    train_run(tiny_spec(), data, root / "c.pt", root / "log.nc")
    return data, root / "c.pt"


def test_eval_file_and_summary(trained, tmp_path):
    data, ckpt = trained
    out = evaluate_checkpoint(ckpt, data, SUITE, tmp_path / "e.nc", device="cpu")
    with xr.open_dataset(tmp_path / "e.nc") as ds:
        assert ds["nrmse"].dims == ("sample", "lead") and ds.sizes["lead"] == 4
        # 2 trajectories x 2 starts per split
        assert list(ds["split"].values) == ["test"] * 4 + ["ood"] * 4
        assert list(ds["traj_index"].values) == [0, 0, 1, 1] * 2
        assert set(ds["regime"].values) == {"laminar", "shedding"}
        starts = ds["start"].values
        assert ((starts >= 1) & (starts <= 10 - 1 - 4)).all()
        for v in ("vrmse", "pearson", "correlation_time", "ece", "crps", "spread_skill",
                  "nrmse_persistence", "nrmse_linear", "nrmse_reference"):
            assert v in ds
        assert ds["nrmse_channel"].dims == ("sample", "lead", "channel")
        assert list(ds["channel"].values) == ["u", "v", "p"]
        assert np.allclose(ds["nrmse_channel"].mean("channel"), ds["nrmse"])
        assert any(v.startswith("gate_") and v.endswith("_pass") for v in ds.data_vars)
        nrmse = ds["nrmse"].values
        assert out["nrmse"] == pytest.approx(nrmse[:4].mean())
        assert out["nrmse_long"] == pytest.approx(nrmse[:4, 2:].mean())
        assert out["nrmse_ood"] == pytest.approx(nrmse[4:].mean())
        assert out["nrmse_linear"] == pytest.approx(ds["nrmse_linear"].values[:4].mean())
        assert out["nrmse_u"] == pytest.approx(ds["nrmse_channel"].values[:4, :, 0].mean())
        lam = ds["regime"].values[:4] == "laminar"
        assert out["nrmse_regime_laminar"] == pytest.approx(nrmse[:4][lam].mean())
        assert out["nrmse_persistence_regime_shedding"] == pytest.approx(
            ds["nrmse_persistence"].values[:4][~lam].mean())
        assert out["n_samples"] == 4 and out["n_samples_regime_laminar"] == 2
        assert np.isnan(ds["nrmse_reference"].values).all()
    assert out["diverged"] == 0 and math.isfinite(out["nrmse_persistence"])
    assert out["skill"] == pytest.approx(1 - out["nrmse"] / out["nrmse_persistence"])
    assert math.isnan(out["nrmse_reference"]) and math.isnan(out["skill_reference"])
    assert out["spread_skill"] > 0  # corrector noise spreads the ensemble
    read = read_eval(tmp_path / "e.nc")  # what ranking and reports read back
    assert {k: float(read[k]) for k in out} == pytest.approx(
        {k: float(v) for k, v in out.items()}, nan_ok=True)
    for key in SUMMARY_KEYS:
        assert key in out


def test_missing_ood_split_gives_nan(trained, tmp_path):
    data, ckpt = trained
    suite = EvalSuite("t", splits=["test"], n_traj=1, horizon=2, long_horizon_from=1,
                      ensemble_members=2, points=48)
    out = evaluate_checkpoint(ckpt, data, suite, tmp_path / "e.nc", device="cpu")
    assert math.isnan(out["nrmse_ood"]) and math.isfinite(out["nrmse"])
    assert math.isnan(out["j_per_step"]) or out["j_per_step"] > 0  # NaN = not measured


def test_diverged_checkpoint_is_a_failed_record(trained, tmp_path):
    data, ckpt = trained
    c = load_checkpoint(ckpt)
    c["status"] = "diverged"
    save_checkpoint(tmp_path / "d.pt", c)
    out = evaluate_checkpoint(tmp_path / "d.pt", data, SUITE, tmp_path / "e.nc", device="cpu")
    assert out["diverged"] == 1 and out["gates_pass"] == 0 and math.isnan(out["nrmse"])


def test_nonfinite_rollout_is_a_failed_record(trained, tmp_path):
    data, ckpt = trained
    c = load_checkpoint(ckpt)
    c["ema"]["surrogate"]["decoder.change_head.bias"].fill_(float("inf"))
    save_checkpoint(tmp_path / "n.pt", c)
    out = evaluate_checkpoint(tmp_path / "n.pt", data, SUITE, tmp_path / "e.nc", device="cpu")
    assert out["diverged"] == 1 and out["gates_pass"] == 0


def rollout(ckpt_path, weight=1.0, corrector=None, members=2, batch_members=False):
    ckpt = load_checkpoint(ckpt_path)
    model, _ = load_model(ckpt_path, ckpt)
    den, ccfg = load_denoiser(ckpt, model)
    from physweep.physics.gates import grid_info

    split = synthetic_split(n_traj=2, seed=1)
    return rollout_ensemble(model, den, corrector or ccfg, split, [0, 1], 1, 4, 48,
                            torch.Generator().manual_seed(0), members, weight, grid_info(split),
                            batch_members=batch_members)


def test_rollout_shape_and_corrector_calls(trained):
    _, ckpt = trained
    res = rollout(ckpt, corrector=CorrectorConfig(cadence=2, steps=1), members=3)
    assert res.fields.shape == (3, 2, 4, 3, 8, 16)
    assert res.corrector_calls == 2 * (4 // 2) and res.s_per_step > 0
    plain = rollout(ckpt, corrector=CorrectorConfig(cadence=5, steps=1), members=3)
    assert plain.corrector_calls == 0 and torch.equal(plain.fields[0], plain.fields[2])
    # computing the identical members as a batch (the corrector benchmark's timing reference)
    # gives the same fields
    batched = rollout(ckpt, corrector=CorrectorConfig(cadence=5, steps=1), members=3,
                      batch_members=True)
    assert torch.allclose(batched.fields, plain.fields, atol=1e-5)


def test_rollout_decodes_in_chunks_with_the_same_fields(trained, monkeypatch):
    """The ensemble's grid decoding is chunked (full-preset ensembles would hold 8.4 M queries'
    decoder activations at once); the chunks give the fields of one batch."""
    from physweep.evaluate import rollout as R

    _, ckpt = trained
    corrector = CorrectorConfig(cadence=2, steps=1)
    whole = rollout(ckpt, corrector=corrector, members=3)
    monkeypatch.setattr(R, "DECODE_CHUNK_QUERIES", 5 * 8 * 16)  # 5 grids of the 12 per traj
    chunked = rollout(ckpt, corrector=corrector, members=3)
    assert torch.allclose(chunked.fields, whole.fields, atol=1e-5)


def test_knob_projection_weight_blends_outputs(trained):
    _, ckpt = trained
    a = rollout(ckpt, weight=0.0).fields
    b = rollout(ckpt, weight=1.0).fields
    c = rollout(ckpt, weight=2.0).fields
    assert not torch.equal(a, b) and not torch.equal(b, c)
    assert np.isfinite(c.numpy()).all()


def test_outputs_carry_the_dirichlet_data_at_every_projection_weight(trained):
    """The inlet profile and no-slip in solids are imposed on every output (they are known): the
    inflow gate reads 0 and solid cells hold zero velocity whatever the model predicts there
    (the no_slip gate also extrapolates the flow to the channel walls, which stays the model's;
    so does the interior: projection weight 0 leaves it untouched)."""
    from physweep.physics.gates import compute_gates, grid_info

    _, ckpt = trained
    split = synthetic_split(n_traj=2, seed=1)
    for weight in (0.0, 1.0):
        fields = rollout(ckpt, weight=weight).fields[0]  # (N, T, C, H, W)
        for i in range(fields.shape[0]):
            gates = compute_gates(fields[i], split.mask[i], split.inflow[i], grid_info(split))
            assert gates["inflow"] < 1e-6, (weight, gates)
            solid = ~split.mask[i].bool()
            assert solid.any() and float(fields[i][:, :2, solid].abs().max()) == 0.0
