import json
import os
import signal

import numpy as np
import pytest
import torch
import xarray as xr
from physweep_testkit import synthetic_split, tiny_spec, write_dataset

from physweep.model.surrogate import load_checkpoint, load_model
from physweep.train import loop
from physweep.train.loop import MACHINE_COLUMNS, TrainConfig, Trainer, train_run


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"), with_ood=False)


@pytest.fixture(scope="module")
def split():
    return synthetic_split()


def one_step(split, **train):
    torch.set_num_threads(1)
    t = Trainer(tiny_spec(**train), split)
    row = t.train_step()
    return t, row


def weights(t):
    return torch.cat([p.detach().flatten() for p in t.model.parameters()])


def test_one_training_step_changes_weights(split):
    t = Trainer(tiny_spec(), split)
    before = weights(t).clone()
    row = t.train_step()
    assert row["finite"] and np.isfinite(row["loss"]) and row["grad_norm"] > 0
    assert not torch.equal(before, weights(t))
    assert t.step == 1 and t.tokens_seen == 64


def test_full_run_writes_log_and_checkpoint(data, tmp_path):
    out = train_run(tiny_spec(), data, tmp_path / "c.pt", tmp_path / "log.nc")
    assert out["status"] == "ok" and out["step"] == out["total_steps"] == 6
    with xr.open_dataset(tmp_path / "log.nc") as ds:
        for name in loop.LOG_SCALARS:
            assert ds[name].dims == ("step",)
        assert ds["sampler_prob"].dims == ("step", "regime")
        assert ds.attrs["status"] == "ok" and ds.attrs["diverged_step"] == -1
        assert ds.attrs["steps_total"] == 6 and ds.attrs["tokens_seen"] == 384
        assert list(ds["horizon"].values) == [1, 1, 1, 2, 2, 2]
    model, spec = load_model(tmp_path / "c.pt")
    assert spec["run"] == "tiny" and model.cfg.model_dim == 16
    ckpt = load_checkpoint(tmp_path / "c.pt")
    assert {"optimizer", "rng", "sampler", "curriculum", "norm_stats", "ema"} <= set(ckpt)


def test_resume_from_probe_is_bitwise_identical(data, tmp_path):
    spec = tiny_spec()
    train_run(spec, data, tmp_path / "full.pt", tmp_path / "full.nc")
    probe = train_run(spec, data, tmp_path / "probe.pt", tmp_path / "probe.nc", stop_fraction=0.5)
    assert probe["step"] == 3
    train_run(spec, data, tmp_path / "res.pt", tmp_path / "res.nc",
              resume_from=tmp_path / "probe.pt")
    a, b = load_checkpoint(tmp_path / "full.pt"), load_checkpoint(tmp_path / "res.pt")
    for group in ("weights", "ema"):
        for part in a[group]:
            for k, v in a[group][part].items():
                assert torch.equal(v, b[group][part][k]), (group, part, k)
    with xr.open_dataset(tmp_path / "full.nc") as x, xr.open_dataset(tmp_path / "res.nc") as y:
        assert list(x["step"].values) == list(y["step"].values) == [1, 2, 3, 4, 5, 6]
        for name in x.data_vars:
            if name not in MACHINE_COLUMNS:
                np.testing.assert_array_equal(x[name].values, y[name].values, err_msg=name)


def test_a_probe_resumes_under_another_thread_count_and_device_setting(data, tmp_path):
    """The machine is not the run: a probe trained with 1 thread finishes with 2 (and with
    ``device: auto`` instead of ``cpu`` in the spec), and the log records both segments."""
    spec = tiny_spec()  # threads=1, device=cpu
    train_run(spec, data, tmp_path / "full.pt", tmp_path / "full.nc", threads=1)
    train_run(spec, data, tmp_path / "probe.pt", tmp_path / "probe.nc", stop_fraction=0.5,
              threads=1)
    other_machine = tiny_spec(threads=2, device="auto")
    out = train_run(other_machine, data, tmp_path / "res.pt", tmp_path / "res.nc",
                    resume_from=tmp_path / "probe.pt", threads=2)
    assert out["status"] == "ok" and out["step"] == 6
    assert loop.run_identity(spec) == loop.run_identity(other_machine)
    with xr.open_dataset(tmp_path / "res.nc") as log:
        segments = json.loads(log.attrs["hardware_segments"])
        assert [(s["from_step"], s["to_step"], s["threads"]) for s in segments] == [
            (0, 3, 1), (3, 6, 2)]
        assert log.attrs["threads"] == 2 and log.attrs["hardware"]
    # the same result where determinism allows: the thread count may reorder float sums
    a, b = load_checkpoint(tmp_path / "full.pt"), load_checkpoint(tmp_path / "res.pt")
    for part in a["weights"]:
        for k, v in a["weights"][part].items():
            torch.testing.assert_close(b["weights"][part][k], v, rtol=1e-3, atol=1e-5)
    with xr.open_dataset(tmp_path / "full.nc") as x, xr.open_dataset(tmp_path / "res.nc") as y:
        np.testing.assert_allclose(y["loss"].values, x["loss"].values, rtol=1e-3)


def test_a_resume_of_another_run_is_refused_naming_the_difference(data, tmp_path):
    train_run(tiny_spec(), data, tmp_path / "probe.pt", tmp_path / "probe.nc",
              stop_fraction=0.5)
    with pytest.raises(ValueError, match="train.lr"):
        train_run(tiny_spec(lr=5e-4), data, tmp_path / "res.pt", tmp_path / "res.nc",
                  resume_from=tmp_path / "probe.pt")


def test_divergence_is_recorded_not_raised(data, tmp_path, monkeypatch):
    real = Trainer.compute_loss

    def nan_at_step_2(self, batch, h):
        total, parts, per = real(self, batch, h)
        return (total * float("nan") if self.step == 2 else total), parts, per

    monkeypatch.setattr(Trainer, "compute_loss", nan_at_step_2)
    out = train_run(tiny_spec(), data, tmp_path / "c.pt", tmp_path / "log.nc")
    assert out["status"] == "diverged" and out["step"] == 3
    with xr.open_dataset(tmp_path / "log.nc") as ds:
        assert ds.attrs["status"] == "diverged" and ds.attrs["diverged_step"] == 3
        assert np.isnan(ds["loss"].values[-1])
    assert load_checkpoint(tmp_path / "c.pt")["status"] == "diverged"


def test_huge_lr_diverges_or_stays_finite_without_crash(data, tmp_path):
    out = train_run(tiny_spec(lr=1e6), data, tmp_path / "c.pt", tmp_path / "log.nc")
    assert out["status"] in ("ok", "diverged")


def test_sigusr1_preempts_after_the_step(data, tmp_path, monkeypatch):
    real = Trainer.train_step

    def step_and_signal(self):
        row = real(self)
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGUSR1)
        return row

    monkeypatch.setattr(Trainer, "train_step", step_and_signal)
    out = train_run(tiny_spec(), data, tmp_path / "c.pt", tmp_path / "log.nc")
    assert out["status"] == "preempted" and out["step"] == 2
    monkeypatch.undo()
    out = train_run(tiny_spec(), data, tmp_path / "c2.pt", tmp_path / "log2.nc",
                    resume_from=tmp_path / "c.pt")
    assert out["status"] == "ok" and out["step"] == 6


def test_config_checks():
    with pytest.raises(ValueError):
        TrainConfig(batch_tokens=100, points_per_sample=32)
    with pytest.raises(ValueError):
        TrainConfig(micro_batch=0)
    with pytest.raises(ValueError):
        TrainConfig(precision="fp16")


# --- one test per training knob: it changes the computation ---------------------------------


@pytest.mark.parametrize(("knob", "a", "b"), [("lr", 1e-3, 2e-3), ("warmup", 0.03, 0.5)])
def test_knob_changes_update(split, knob, a, b):
    ta, ra = one_step(split, **{knob: a})
    tb, rb = one_step(split, **{knob: b})
    assert ra["lr"] != rb["lr"]
    assert not torch.equal(weights(ta), weights(tb))


def test_knob_ema(split):
    ta, _ = one_step(split, ema=0.9)
    tb, _ = one_step(split, ema=0.99)
    ea = ta.ema.module["surrogate"].encoder.queries
    eb = tb.ema.module["surrogate"].encoder.queries
    assert torch.equal(ta.model.encoder.queries, tb.model.encoder.queries)
    assert not torch.equal(ea, eb)


@pytest.mark.parametrize(("knob", "part"), [("projection_weight", "loss_physics"),
                                            ("inverse_encode", "loss_inverse_encode"),
                                            ("inverse_decode", "loss_inverse_decode")])
def test_knob_loss_weights(split, knob, part):
    # two steps: the second shows the weight acting through the updated parameters
    def two_steps(**kw):
        t, _ = one_step(split, **kw)
        return t, t.train_step()

    t0, r0 = two_steps(**{knob: 0.0})
    t1, r1 = two_steps(**{knob: 0.5})
    t2, r2 = two_steps(**{knob: 1.0})
    assert r0[part] == 0.0 and r1[part] > 0
    assert r1["loss"] != r2["loss"]
    assert not torch.equal(weights(t1), weights(t2))


def test_knob_max_horizon(split):
    ta = Trainer(tiny_spec(max_horizon=2), split)
    tb = Trainer(tiny_spec(max_horizon=3), split)
    ta.step = tb.step = 5
    assert (ta.train_step()["horizon"], tb.train_step()["horizon"]) == (2, 3)


def test_knob_freeze_bottom_layers_on_expand(split):
    for freeze in (True, False):
        t = Trainer(tiny_spec(freeze_bottom_layers_on_expand=freeze), split)
        t.step = 3  # first step of the second (expanded) stage
        bottom = t.model.approximator.blocks[0].mlp.fc1.weight.detach().clone()
        top = t.model.approximator.blocks[1].mlp.fc1.weight.detach().clone()
        enc = t.model.encoder.queries.detach().clone()
        t.train_step()
        assert torch.equal(bottom, t.model.approximator.blocks[0].mlp.fc1.weight) == freeze
        assert not torch.equal(top, t.model.approximator.blocks[1].mlp.fc1.weight)
        assert not torch.equal(enc, t.model.encoder.queries)  # the encoder always trains


def test_knob_sampler_temp(split):
    ta, _ = one_step(split, sampler_temp=0.6)
    tb, _ = one_step(split, sampler_temp=0.8)
    assert not torch.allclose(ta.sampler.probabilities(), tb.sampler.probabilities())


def test_corrector_loss_trained_only_when_steps_positive(split):
    spec = tiny_spec()
    spec["corrector"]["steps"] = 0
    t = Trainer(spec, split)
    assert t.train_step()["loss_corrector"] == 0.0
    t2, row = one_step(split)
    assert row["loss_corrector"] > 0


def test_uneven_accumulation_keeps_the_batch(split):
    # 5 samples per step in micro-batches of 2 (2 + 2 + 1): every sample counts once
    t, row = one_step(split, batch_tokens=160, points_per_sample=32, micro_batch=2,
                      budget_tokens=160 * 4)
    assert row["finite"] and t.tokens_seen == 160
    calls = []
    real = t.draw_batch
    t.draw_batch = lambda sub, h: calls.append(len(sub)) or real(sub, h)
    t.train_step()
    assert calls == [2, 2, 1]


def test_rollout_loss_weights_channels_by_their_change(split):
    """The channel that changes most per snapshot (in its own std units) weighs least, and the
    weights put the rollout loss in units of the one-step change: persistence scores 1 per
    channel at lead 1 (on the fluid cells the weights are measured on)."""
    from physweep.train.loop import change_weights, field_statistics

    _, std = field_statistics(split)
    w = change_weights(split, std)
    f = split.fields / std.view(1, 1, -1, 1, 1)
    var = (f[:, 1:] - f[:, :-1]).pow(2).mean(dim=(0, 1, 3, 4))
    fluid = split.mask[:, None, None].expand_as(f[:, 1:]).float()
    var_fluid = ((f[:, 1:] - f[:, :-1]).pow(2) * fluid).sum(dim=(0, 1, 3, 4)) / fluid.sum(
        dim=(0, 1, 3, 4))
    assert (w * var_fluid).tolist() == pytest.approx([1.0] * len(w), rel=1e-4)
    assert torch.argmin(w) == torch.argmax(var) and torch.argmax(w) == torch.argmin(var)


def test_query_points_decode_sampled_cells_except_the_grid_samples(split):
    """``query_points``: the first ``grid_samples`` samples decode every lead on the whole grid,
    where the physics residual is computed; the others decode every lead at that many cells
    (drawn per sample without replacement, the same cells for each lead). Checked against the
    whole-grid predictions of the same weights and batch: the per-sample loss is exactly the
    weighted MSE over those cells; 0 or at least the grid's cell count decodes every cell at
    every lead."""
    from physweep.physics.gates import physics_residual

    n_cells = split.fields.shape[-2] * split.fields.shape[-1]
    h = 3

    def loss(**train):
        torch.manual_seed(0)
        t = Trainer(tiny_spec(max_horizon=h, **train), split)
        batch = t.draw_batch(torch.tensor([0, 1, 2]), h)
        with torch.no_grad():
            _, parts, per_sample = t.compute_loss(batch, h)
        return t, batch, parts, per_sample

    t, full_batch, full_parts, full = loss()
    assert "query_idx" not in full_batch
    _, all_batch, _, every = loss(query_points=n_cells)
    assert "query_idx" not in all_batch and torch.equal(every, full)
    for g in (1, 2):
        t, batch, parts, sampled = loss(query_points=8, grid_samples=g)
        sub = batch["query_idx"]
        assert sub.shape == (3, 8) and all(len(set(r.tolist())) == 8 for r in sub)
        # the same weights and batch decoded on the whole grid at every lead
        m, b = t.model, 3
        q = t.grid_pos.expand(b, -1, -1)
        with torch.no_grad():
            z, anchor, context = m.start(batch["pos"], batch["vals"], q, anchor=batch["state0"])
            preds = []
            for _ in range(h):
                z = m.approximate(z)
                preds.append(m.predict(z, anchor, q, context))
        pred = torch.stack(preds, 1).transpose(2, 3).reshape(batch["target"].shape)
        err = (t.channel_weight * (pred - batch["target"]).pow(2)).flatten(3)  # (B, h, C, cells)
        at_cells = torch.gather(err, 3, sub[:, None, None].expand(-1, h, err.shape[2], -1))
        per_lead = at_cells.mean(dim=(2, 3))  # (B, h)
        per_lead[:g] = err[:g].mean(dim=(2, 3))  # the grid samples: every cell at every lead
        assert torch.allclose(sampled, per_lead.mean(dim=1), rtol=1e-4, atol=1e-7)
        assert not torch.allclose(sampled, full, rtol=1e-3)
        phys = physics_residual(m.denormalize(pred[:g].flatten(0, 1), dim=1),
                                batch["mask"][:g].repeat_interleave(h, 0),
                                batch["inflow"][:g].repeat_interleave(h, 0), t.grid).mean()
        assert float(parts["loss_physics"]) == pytest.approx(float(phys), rel=1e-4)
        assert float(full_parts["loss_physics"]) > 0
    with pytest.raises(ValueError, match="query_points"):
        TrainConfig(query_points=-1)
    with pytest.raises(ValueError, match="grid_samples"):
        TrainConfig(grid_samples=0)
