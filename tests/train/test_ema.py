import pytest
import torch

from physweep.train.ema import EMA


def test_ema_math():
    m = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(0.0)
    ema = EMA(m, decay=0.9)
    for value in (1.0, 1.0):
        with torch.no_grad():
            m.weight.fill_(value)
        ema.update(m)
    # 0 -> 0.9*0 + 0.1*1 = 0.1 -> 0.9*0.1 + 0.1 = 0.19
    assert float(ema.module.weight) == pytest.approx(0.19)
    assert float(m.weight.detach()) == 1.0


def test_knob_ema_decay():
    m = torch.nn.Linear(2, 2)
    a, b = EMA(m, 0.999), EMA(m, 0.9995)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(1.0)
    a.update(m)
    b.update(m)
    assert not torch.equal(a.module.weight, b.module.weight)
    with pytest.raises(ValueError):
        EMA(m, 1.0)
