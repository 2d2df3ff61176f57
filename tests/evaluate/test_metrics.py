import math

import numpy as np
import pytest
import torch

from physweep.evaluate import metrics as M


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _fields(shape=(4, 3, 16, 24), seed=0):
    return torch.randn(shape, generator=_gen(seed), dtype=torch.float64) + 0.5


# ---------------------------------------------------------------- nRMSE / VRMSE / Pearson


def test_nrmse_perfect_and_zero():
    y = _fields()
    assert torch.allclose(M.nrmse(y, y), torch.zeros(4, dtype=torch.float64))
    assert torch.allclose(M.nrmse(torch.zeros_like(y), y), torch.ones(4, dtype=torch.float64))
    assert M.nrmse(y, y).shape == (4,)


def test_nrmse_matches_manual_and_mask():
    y = _fields((2, 2, 8, 8))
    p = y + 0.1 * _fields((2, 2, 8, 8), seed=1)
    manual = ((p - y).flatten(-2).norm(dim=-1) / y.flatten(-2).norm(dim=-1)).mean(-1)
    assert torch.allclose(M.nrmse(p, y), manual)
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:, :4] = True
    p2 = p.clone()
    p2[..., 4:] = math.nan  # solid cells are ignored entirely
    manual_m = (
        (p[..., :4] - y[..., :4]).flatten(-2).norm(dim=-1) / y[..., :4].flatten(-2).norm(dim=-1)
    ).mean(-1)
    assert torch.allclose(M.nrmse(p2, y, mask), manual_m)


def test_nrmse_per_channel():
    y = _fields((5, 3, 8, 8))
    p = y.clone()
    p[:, 1] = 0.0  # only channel 1 wrong: nRMSE 1 there, 0 in the others
    per_c = M.nrmse_channels(p, y)
    assert per_c.shape == (5, 3)
    assert torch.allclose(per_c, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).expand(5, 3))
    assert torch.allclose(M.nrmse(p, y), per_c.mean(-1))
    mask = torch.ones(8, 8, dtype=torch.bool)
    mask[2:4, 2:4] = False
    assert torch.allclose(M.nrmse(p, y, mask), M.nrmse_channels(p, y, mask).mean(-1))


def test_nrmse_zero_truth_guard():
    y = torch.zeros(1, 1, 4, 4)
    assert M.nrmse(y, y).item() == 0.0
    assert math.isfinite(M.nrmse(y + 1, y).item())


def test_vrmse_mean_prediction_is_one():
    y = _fields()
    mean_pred = y.mean(dim=(-2, -1), keepdim=True).expand_as(y)
    v = M.vrmse(mean_pred, y)
    assert v.shape == (4,)
    assert torch.allclose(v, torch.ones_like(v), atol=1e-6)
    assert torch.allclose(M.vrmse(y, y), torch.zeros_like(v))


def test_vrmse_mask_mean_prediction():
    y = _fields((2, 1, 8, 8))
    mask = torch.ones(8, 8, dtype=torch.bool)
    mask[2:4, 2:4] = False
    fluid_mean = y[..., mask].mean(-1)[..., None, None]
    assert torch.allclose(M.vrmse(fluid_mean.expand_as(y), y, mask), torch.ones(2,
                          dtype=torch.float64), atol=1e-6)


def test_pearson():
    y = _fields()
    assert torch.allclose(M.pearson(y, y), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(M.pearson(-2 * y + 3, y), -torch.ones(4, dtype=torch.float64))
    r = M.pearson(_fields(seed=5), y)
    assert (r.abs() < 0.2).all()
    # constant field: correlation undefined -> 0
    assert M.pearson(torch.ones_like(y), y).abs().max().item() == 0.0


# ---------------------------------------------------------------- correlation time


def test_correlation_time_hand_built():
    corr = torch.tensor(
        [
            [0.99, 0.95, 0.9, 0.85, 0.7, 0.9],  # drops at index 4 -> 4 (no recovery counted)
            [0.99, 0.98, 0.97, 0.96, 0.95, 0.94],  # never drops -> T = 6
            [0.5, 0.9, 0.9, 0.9, 0.9, 0.9],  # drops at once -> 0
            [0.9, 0.9, math.nan, 0.9, 0.9, 0.9],  # NaN counts as drop -> 2
            [0.9, 0.8, 0.9, 0.9, 0.9, 0.9],  # equal to threshold is not "above" -> 1
        ]
    )
    assert M.correlation_time(corr).tolist() == [4, 6, 0, 2, 1]
    assert M.correlation_time(corr, threshold=0.6).tolist() == [6, 6, 0, 2, 6]


# ---------------------------------------------------------------- calibration


def _gauss_case(m=50, n=4000, shrink=1.0, seed=0):
    g = _gen(seed)
    mu = 3 * torch.randn(n, generator=g, dtype=torch.float64)
    sigma = 0.5 + torch.rand(n, generator=g, dtype=torch.float64)
    truth = mu + sigma * torch.randn(n, generator=g, dtype=torch.float64)
    ens = mu + shrink * sigma * torch.randn(m, n, generator=g, dtype=torch.float64)
    return ens, truth, mu, sigma


def test_quantile_levels():
    lv = M.quantile_levels()
    assert len(lv) == 19 and lv[0] == pytest.approx(0.05) and lv[-1] == pytest.approx(0.95)


def test_empirical_quantiles_match_numpy_weibull():
    x = torch.randn(7, 5, generator=_gen(2), dtype=torch.float64)
    lv = M.quantile_levels()
    ours = M.empirical_quantiles(x, lv).numpy()
    ref = np.quantile(x.numpy(), lv, axis=0, method="weibull")
    np.testing.assert_allclose(ours, ref)


def test_ece_calibrated_vs_overconfident():
    ens, truth, _, _ = _gauss_case()
    lv, obs = M.calibration_curve(ens, truth)
    assert lv.shape == obs.shape == (19,)
    assert np.all(np.diff(obs) >= 0)
    assert M.quantile_ece(ens, truth) <= 0.02
    ens_over, truth_o, _, _ = _gauss_case(shrink=0.25, seed=1)
    assert M.quantile_ece(ens_over, truth_o) >= 0.1


def test_ece_small_ensemble_unbiased():
    ens, truth, _, _ = _gauss_case(m=9, n=20000, seed=3)
    # levels inside [1/(M+1), M/(M+1)] are unbiased with the Weibull position
    assert M.quantile_ece(ens, truth, levels=np.arange(1, 10) / 10) <= 0.015


# ---------------------------------------------------------------- CRPS


def test_crps_gaussian_known_values():
    assert M.crps_gaussian(0.0, 1.0, 0.0).item() == pytest.approx(0.2336949772, rel=1e-8)
    assert M.crps_gaussian(0.0, 1.0, 1.0).item() == pytest.approx(0.6024414, rel=1e-6)
    # scale/shift equivariance: CRPS(mu, s, y) = s * CRPS(0, 1, (y-mu)/s)
    assert M.crps_gaussian(2.0, 3.0, 5.0).item() == pytest.approx(3 * 0.6024414, rel=1e-6)


def test_crps_ensemble_matches_closed_form():
    ens, truth, mu, sigma = _gauss_case(m=2000, n=500, seed=4)
    c_ens = M.crps_ensemble(ens, truth)
    c_ref = M.crps_gaussian(mu, sigma, truth)
    assert c_ens.shape == truth.shape
    assert c_ens.mean().item() == pytest.approx(c_ref.mean().item(), rel=0.015)


def test_crps_ensemble_matches_pairwise_definition():
    ens = torch.randn(9, 3, 2, generator=_gen(6), dtype=torch.float64)
    y = torch.randn(3, 2, generator=_gen(7), dtype=torch.float64)
    pair = (ens[:, None] - ens[None, :]).abs().mean(dim=(0, 1))
    ref = (ens - y).abs().mean(0) - 0.5 * pair
    assert torch.allclose(M.crps_ensemble(ens, y), ref)
    # a one-member ensemble reduces to the absolute error
    assert torch.allclose(M.crps_ensemble(ens[:1], y), (ens[0] - y).abs())


# ---------------------------------------------------------------- spread-skill


def test_spread_skill():
    ens, truth, _, _ = _gauss_case(m=10, n=20000, seed=8)
    assert M.spread_skill_ratio(ens, truth) == pytest.approx(1.0, abs=0.03)
    ens_o, truth_o, _, _ = _gauss_case(m=10, n=20000, shrink=0.25, seed=9)
    assert M.spread_skill_ratio(ens_o, truth_o) < 0.5
    assert math.isnan(M.spread_skill_ratio(ens[:1], truth))


# ---------------------------------------------------------------- non-finite inputs


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_never_raises(bad):
    y = _fields((2, 2, 8, 8))
    p = y.clone()
    p[0, 1, 3, 3] = bad
    assert not math.isfinite(M.nrmse(p, y)[0].item())
    assert math.isfinite(M.nrmse(p, y)[1].item())
    assert not math.isfinite(M.vrmse(p, y)[0].item())
    assert not math.isfinite(M.pearson(p, y)[0].item())
    mask = torch.ones(8, 8, dtype=torch.bool)
    assert not math.isfinite(M.nrmse(p, y, mask)[0].item())

    ens, truth, _, _ = _gauss_case(m=8, n=50)
    ens = ens.clone()
    ens[3, 7] = bad
    assert math.isnan(M.quantile_ece(ens, truth))
    assert np.isnan(M.calibration_curve(ens, truth)[1]).all()
    crps = M.crps_ensemble(ens, truth)
    assert not math.isfinite(crps[7].item())
    assert torch.isfinite(crps[:7]).all()
    assert not math.isfinite(M.spread_skill_ratio(ens, truth))
    assert not math.isfinite(M.crps_gaussian(bad, 1.0, 0.0).item())
    # correlation time: documented failed value (non-finite correlation counts as a drop)
    assert M.correlation_time(torch.tensor([0.9, bad, 0.9])).item() == 1
