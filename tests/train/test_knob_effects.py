"""Each knob's declared stage against the trainer (knobs.schema.yaml `x-physweep.stage`).

A tiny trainer is trained twice, once with the knob's field at another value: a `training` knob
must change what is trained (weights, EMA weights, losses or the regime sampler's state), an
`evaluation` knob must leave training bit for bit unchanged (it is read only when a trained run
is rolled out).
"""

from __future__ import annotations

import pytest
import torch
from physweep_testkit import synthetic_split, tiny_spec

from physweep.plan import knobs as K
from physweep.train.loop import Trainer

STEPS = 6  # tiny_spec's budget: two curriculum stages, the horizon expands at step 3


@pytest.fixture(scope="module")
def split():
    return synthetic_split()


def _other(knob: str, value):
    """Another valid value of the knob's field (effective sizes of the tiny spec included)."""
    d = K.REGISTRY[knob]
    s = d.schema
    if "enum" in s:
        return next(e for e in s["enum"] if e != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 4 if knob == "model_dim" else value + 1  # model_dim: a multiple of 4
    hi = s.get("maximum", s.get("exclusiveMaximum", float("inf")))
    return value * 2 if 0 < value * 2 < hi else value / 2 if value else 0.5


def _train(spec, split, steps: int = STEPS):
    torch.set_num_threads(1)
    t = Trainer(spec, split)
    rows = [t.train_step() for _ in range(steps)]
    weights = [p.detach().clone() for p in t.modules.parameters()]
    ema = [p.detach().clone() for p in t.ema.module.parameters()]
    losses = [(r["loss"], r["loss_corrector"]) for r in rows]
    return weights, ema, losses, t.sampler.probabilities().tolist()


def _same(a, b) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and torch.equal(x, y)
                                    for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def reference(split):
    return _train(tiny_spec(), split)


@pytest.mark.parametrize("knob", list(K.REGISTRY))
def test_a_knob_changes_training_exactly_when_declared_training_time(knob, split, reference):
    d = K.REGISTRY[knob]
    spec = tiny_spec()
    spec[d.section][d.field] = _other(knob, spec[d.section][d.field])
    weights, ema, *rest = _train(spec, split)
    unchanged = _same(weights, reference[0]) and _same(ema, reference[1]) and rest == list(reference[2:])
    if d.stage == "evaluation":
        assert unchanged, f"training reads {d.section}.{d.field}, declared evaluation-time"
    else:
        assert not unchanged, f"{d.section}.{d.field} = {spec[d.section][d.field]!r} trains the same"


def test_weight_decay_decays_the_weight_matrices(split):
    """One AdamW step from the same start: the decayed matrices differ by exactly lr·wd·w0,
    biases, norms and embeddings not at all; a couple of steps later the runs differ."""
    torch.set_num_threads(1)
    runs = {}
    for wd in (0.0, 0.1):
        t = Trainer(tiny_spec(weight_decay=wd), split)
        start = [p.detach().clone() for p in t.modules.parameters()]
        lr = t.train_step()["lr"]
        runs[wd] = (t, start, lr)
    (t0, w0, lr), (t1, _, lr1) = runs[0.0], runs[0.1]
    assert lr == lr1
    for p0, p1, init in zip(t0.modules.parameters(), t1.modules.parameters(), w0, strict=True):
        if p0.ndim >= 2:
            torch.testing.assert_close(p0 - p1, lr * 0.1 * init, rtol=1e-4, atol=1e-7)
        else:
            assert torch.equal(p0, p1)
    for t in (t0, t1):
        t.train_step()
    assert any(not torch.equal(a, b)
               for a, b in zip(t0.model.parameters(), t1.model.parameters(), strict=True))
