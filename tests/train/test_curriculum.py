import torch

from physweep.model.surrogate import Surrogate, SurrogateConfig
from physweep.train.curriculum import Curriculum


def test_stages_and_horizons():
    c = Curriculum(max_horizon=32, stages=4, total_steps=100, freeze_on_expand=True)
    assert [c.horizon(s) for s in (0, 24, 25, 50, 75, 99)] == [1, 1, 11, 22, 32, 32]
    assert Curriculum(16, 1, 10, False).horizon(0) == 16


def test_knob_max_horizon():
    assert Curriculum(16, 3, 90, False).horizon(89) == 16
    assert Curriculum(48, 3, 90, False).horizon(89) == 48


def frozen_names(freeze: bool, step: int) -> set[str]:
    model = Surrogate(SurrogateConfig(model_dim=16, depth=4, heads=2, latent_tokens=8,
                                      window_size=4, supernodes=8))
    Curriculum(8, 2, 10, freeze).apply(step, model)
    return {n for n, p in model.named_parameters() if not p.requires_grad}


def test_knob_freeze_bottom_layers_on_expand_frozen_set():
    assert frozen_names(True, 0) == set()  # before the first expansion
    frozen = frozen_names(True, 5)
    # the lower half of the approximator; the encoder and decoder keep training (they define the
    # latent space; freezing the encoder after a short first stage locked in a collapsed latent)
    assert frozen and all(n.startswith(("approximator.blocks.0.", "approximator.blocks.1."))
                          for n in frozen)
    assert any(n.startswith("approximator.blocks.1.") for n in frozen)
    assert not any(n.startswith(("encoder.", "decoder.")) for n in frozen)
    assert frozen_names(False, 5) == set()
    model = Surrogate(SurrogateConfig(model_dim=16, depth=4, heads=2, latent_tokens=8,
                                      window_size=4, supernodes=8))
    c = Curriculum(8, 2, 10, True)
    c.apply(5, model)
    c.apply(0, model)  # a stage that is not expanded unfreezes again
    assert all(p.requires_grad for p in model.parameters())
    assert isinstance(model, torch.nn.Module)
