import pytest

from physweep.train.schedule import lr_at, scale_lr


def test_warmup_then_cosine_values():
    # 100 steps, 10 warmup steps, base 1.0, floor 0.1
    assert lr_at(0, 100, 1.0, 0.1) == pytest.approx(0.1)
    assert lr_at(4, 100, 1.0, 0.1) == pytest.approx(0.5)
    assert lr_at(9, 100, 1.0, 0.1) == pytest.approx(1.0)
    assert lr_at(10, 100, 1.0, 0.1) == pytest.approx(1.0)  # cosine starts at the peak
    mid = 10 + (100 - 10 - 1) / 2
    assert lr_at(int(mid), 100, 1.0, 0.1) == pytest.approx(0.55, abs=0.02)
    assert lr_at(99, 100, 1.0, 0.1) == pytest.approx(0.1)
    assert lr_at(500, 100, 1.0, 0.1) == pytest.approx(0.1)
    lrs = [lr_at(s, 100, 1.0, 0.1) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_knob_warmup():
    assert lr_at(0, 100, 1.0, 0.03) != lr_at(0, 100, 1.0, 0.06)
    assert lr_at(0, 100, 1.0, 0.0) == pytest.approx(1.0)


def test_knob_lr_scales_schedule():
    assert lr_at(30, 100, 4.5e-4, 0.05) == pytest.approx(1.5 * lr_at(30, 100, 3e-4, 0.05))


def test_linear_lr_scaling():
    assert scale_lr(3e-4, 8192, 4096) == pytest.approx(6e-4)
    assert scale_lr(3e-4, 2048, 4096) == pytest.approx(1.5e-4)
    with pytest.raises(ValueError):
        scale_lr(3e-4, 0, 4096)
