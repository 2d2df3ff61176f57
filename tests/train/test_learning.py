"""Does the surrogate learn? Behaviour of a short training on predictable data, on held-out states.

The mechanism tests (tests/model) show the latent *can* depend on the input; these show that
training keeps it so and that the prediction moves the way the flow moves. Before the fix of
issue #11 the latent's input-dependent share fell to 4.5e-8 and every prediction was the start
state (persistence); these assertions fail for that model.
"""

from __future__ import annotations

import pytest
import torch
from physweep_testkit import synthetic_split, tiny_spec

from physweep.model.surrogate import latent_input_share
from physweep.physics.dataset import sample_points
from physweep.train.loop import Trainer

pytestmark = pytest.mark.slow


def held_out_one_step(model, split, points=64):
    """(predicted change, true change, latents) of one step from every state of ``split``."""
    g = torch.Generator().manual_seed(0)
    c = split.fields.shape[2]
    grid = split.coords.reshape(1, -1, 2)
    pred, true, zs = [], [], []
    for i in range(split.n_traj):
        for t in range(split.n_time - 1):
            idx = sample_points(split.mask[i], points, g)
            pos = split.coords.reshape(-1, 2)[idx][None]
            vals = model.normalize(split.fields[i, t].reshape(c, -1)[:, idx].T[None])
            state = model.normalize(split.fields[i, t].reshape(c, -1).T[None])
            with torch.no_grad():
                z0, anchor, context = model.start(pos, vals, grid, anchor=state)
                y = model.predict(model.approximate(z0), anchor, grid, context)
            fluid = split.mask[i].reshape(-1)
            nxt = model.normalize(split.fields[i, t + 1].reshape(c, -1).T[None])
            pred.append((y - state)[0, fluid])
            true.append((nxt - state)[0, fluid])
            zs.append(z0)
    return torch.cat(pred), torch.cat(true), torch.cat(zs)


@pytest.fixture(scope="module")
def trained():
    spec = tiny_spec(lr=3e-3, warmup=0.05, ema=0.0, max_horizon=1, curriculum_stages=1,
                     batch_tokens=4 * 64, points_per_sample=64, micro_batch=4,
                     budget_tokens=4 * 64 * 150, inverse_encode=0.5, inverse_decode=0.5,
                     projection_weight=0.0)
    spec["corrector"]["steps"] = 0
    torch.manual_seed(0)
    trainer = Trainer(spec, synthetic_split(seed=0))
    before = held_out_one_step(trainer.model, synthetic_split(n_traj=3, seed=1))
    while trainer.step < trainer.total_steps:
        trainer.train_step()
    return trainer, before


def test_prediction_moves_toward_the_true_change(trained):
    trainer, _ = trained
    pred, true, _ = held_out_one_step(trainer.model, synthetic_split(n_traj=3, seed=1))
    cos = torch.nn.functional.cosine_similarity(pred.flatten(), true.flatten(), dim=0)
    err = (pred - true).pow(2).mean()
    persistence = true.pow(2).mean()  # the error of predicting no change
    print(f"\nheld-out one-step: cos(pred, true change) {cos:.3f}, "
          f"MSE {err:.4f} vs persistence {persistence:.4f}")
    assert cos > 0.6
    assert err < 0.5 * persistence


def test_latent_stays_input_dependent_through_training(trained):
    trainer, before = trained
    _, _, z_after = held_out_one_step(trainer.model, synthetic_split(n_traj=3, seed=1))
    share_before, share_after = latent_input_share(before[2]), latent_input_share(z_after)
    print(f"\nlatent input-dependent share: {share_before:.3f} at init, {share_after:.3f} trained")
    assert share_after > 0.1
    assert share_after > share_before
