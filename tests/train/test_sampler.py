import math

import pytest
import torch

from physweep.train.sampler import FLOOR, RegimeSampler


def sampler(temp, losses=(1.0, 2.0, 3.0)):
    s = RegimeSampler(torch.tensor([0, 0, 1, 2, 2, 2]), 3, temp)
    s.loss_ema = torch.tensor(losses, dtype=torch.float64)
    return s


def expected(temp, losses=(1.0, 2.0, 3.0)):
    rel = [x / (sum(losses) / 3) for x in losses]
    w = [math.exp(r / temp) for r in rel]
    return [FLOOR / 3 + (1 - FLOOR) * x / sum(w) for x in w]


@pytest.mark.parametrize("temp", [0.6, 0.7, 0.8])
def test_probabilities_at_known_losses(temp):
    p = sampler(temp).probabilities()
    assert p.tolist() == pytest.approx(expected(temp))
    assert p[2] > p[1] > p[0]  # higher loss -> sampled more


def test_knob_sampler_temp():
    assert not torch.allclose(sampler(0.6).probabilities(), sampler(0.8).probabilities())
    assert sampler(1e9).probabilities().tolist() == pytest.approx([1 / 3] * 3)
    # T -> 0: all of the non-floor share on the hardest regime; no regime below the floor
    assert sampler(0.01).probabilities()[2] == pytest.approx(FLOOR / 3 + 1 - FLOOR)


def test_no_regime_starved():
    """Losses as measured on the demo (steady ~0, irregular far above the mean): before the
    floor, T = 0.7 left ~3 % of the draws to the steady regime."""
    p = sampler(0.7, losses=(1e-4, 0.04, 0.15)).probabilities()
    assert p.min() >= FLOOR / 3 - 1e-12
    draws = sampler(0.7, losses=(1e-4, 0.04, 0.15)).sample(3000, torch.Generator().manual_seed(0))
    steady = (draws < 2).double().mean()  # trajectories 0 and 1 are regime 0
    assert steady > 0.15


def test_uniform_at_start_absent_regime_never_drawn_and_update():
    s = RegimeSampler(torch.tensor([0, 0, 2]), 3, 0.7)
    assert s.probabilities().tolist() == pytest.approx([0.5, 0.0, 0.5])
    draws = s.sample(50, torch.Generator().manual_seed(0))
    assert set(draws.tolist()) <= {0, 1, 2}
    s.update(torch.tensor([2, 0]), torch.tensor([10.0, float("nan")]))
    assert s.loss_ema[2] == pytest.approx(0.9 + 1.0) and s.loss_ema[0] == 1.0
    assert s.probabilities()[2] > 0.5
    assert s.probabilities()[1] == 0.0  # the floor is spread over the regimes present only
