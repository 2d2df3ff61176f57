import pytest
import torch
from physweep_testkit import open_branches

from physweep.model.corrector import (
    CorrectorConfig,
    Denoiser,
    build_denoiser,
    denoiser_loss,
    latent_rollout,
)
from physweep.model.surrogate import Surrogate, SurrogateConfig

CFG = SurrogateConfig(model_dim=16, depth=2, heads=2, latent_tokens=8, window_size=4,
                      supernodes=16)


@pytest.fixture()
def setup():
    torch.manual_seed(0)
    model = open_branches(Surrogate(CFG).eval())
    den = build_denoiser(model, CorrectorConfig(steps=3)).eval()
    z0 = model.encode(torch.rand(2, 30, 2), torch.randn(2, 30, 3)).detach()
    return model, den, z0


def residual_fn(model):
    q = torch.rand(1, 50, 2, generator=torch.Generator().manual_seed(1))

    def fn(z):
        y = model.decode(z, q.expand(z.shape[0], -1, -1))
        return (y[..., 0] - 0.5).pow(2).mean(dim=1) + y[..., 1].pow(2).mean(dim=1)
    return fn


def run(model, den, z0, seed=0, **kw):
    cfg = CorrectorConfig(**kw)
    g = torch.Generator().manual_seed(seed)
    return latent_rollout(model, z0, 6, cfg, den, g, residual_fn(model))


def plain(model, z0, horizon=6):
    return latent_rollout(model, z0, horizon).latents


def test_steps_zero_is_plain_rollout(setup):
    model, den, z0 = setup
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    res = latent_rollout(model, z0, 6, CorrectorConfig(steps=0, cadence=1), den, g)
    assert torch.equal(res.latents, plain(model, z0))
    assert res.corrector_calls == 0
    assert torch.equal(g.get_state(), state)  # no noise drawn


def test_cadence_beyond_horizon_is_plain_rollout(setup):
    model, den, z0 = setup
    res = run(model, den, z0, cadence=7, steps=2)
    assert torch.equal(res.latents, plain(model, z0))
    assert res.corrector_calls == 0


@pytest.mark.parametrize(("cadence", "steps", "calls"), [(1, 1, 6), (2, 2, 3), (3, 2, 2),
                                                         (4, 3, 1), (6, 1, 1)])
def test_number_of_corrector_calls(setup, cadence, steps, calls):
    model, den, z0 = setup
    seen = []
    hook = den.register_forward_hook(lambda *a: seen.append(1))
    res = run(model, den, z0, cadence=cadence, steps=steps)
    hook.remove()
    assert res.corrector_calls == calls == 6 // cadence
    assert res.denoiser_calls == len(seen) == calls * steps


def test_knob_cadence(setup):
    model, den, z0 = setup
    a, b = run(model, den, z0, cadence=2), run(model, den, z0, cadence=3)
    assert not torch.equal(a.latents, b.latents)
    assert a.corrector_calls != b.corrector_calls


def test_knob_steps(setup):
    model, den, z0 = setup
    a, b = run(model, den, z0, steps=1), run(model, den, z0, steps=2)
    assert not torch.equal(a.latents, b.latents)
    assert (a.denoiser_calls, b.denoiser_calls) == (1, 2)


def test_knob_guidance(setup):
    model, den, z0 = setup
    a, b = run(model, den, z0, guidance=0.0), run(model, den, z0, guidance=1.5)
    assert not torch.equal(a.latents, b.latents)


def test_guidance_reduces_physics_residual(setup):
    model, den, z0 = setup
    fn = residual_fn(model)
    res = {}
    for lam in (0.0, 1.0):
        r = latent_rollout(model, z0, 1, CorrectorConfig(cadence=1, steps=1, guidance=lam),
                           den, torch.Generator().manual_seed(3), fn)
        with torch.no_grad():
            res[lam] = fn(r.latents[:, -1]).mean()
    assert res[1.0] < res[0.0]


def test_ensemble_members_differ_by_noise(setup):
    model, den, z0 = setup
    r = run(model, den, z0[:1].expand(3, -1, -1), cadence=1, steps=2)
    assert not torch.equal(r.latents[0], r.latents[1])
    r2 = run(model, den, z0[:1].expand(3, -1, -1), cadence=1, steps=2)
    assert torch.equal(r.latents, r2.latents)  # same generator seed -> same ensemble


def test_denoiser_loss_trains_and_is_zero_when_off(setup):
    model, den, z0 = setup
    g = torch.Generator().manual_seed(0)
    loss = denoiser_loss(den, CorrectorConfig(steps=2), z0, z0, g)
    loss.backward()
    assert loss > 0 and any(p.grad is not None for p in den.parameters())
    assert float(denoiser_loss(den, CorrectorConfig(steps=0), z0, z0, g)) == 0.0


def test_sigma_schedule_and_validation():
    cfg = CorrectorConfig(steps=2, sigma_min=0.01)
    assert cfg.sigma(2) == pytest.approx(0.01) and cfg.sigma(1) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        CorrectorConfig(cadence=0)
    assert isinstance(Denoiser(16, 2, 2), torch.nn.Module)
