"""A run's training identity (physweep.plan.spec.training_spec) keeps exactly what training
reads: the fields it drops leave training bit for bit unchanged, a field it keeps changes it.
Runs whose training specs agree share one training (rules/train.smk)."""

from __future__ import annotations

import copy

import pytest
import torch
from physweep_testkit import synthetic_split, tiny_spec

from physweep.plan import knobs as K
from physweep.plan.spec import (
    EVALUATION_FIELDS,
    evaluation_settings,
    training_identity,
    training_knobs,
    training_spec,
)
from physweep.train.loop import Trainer

STEPS = 6
#: another value of each evaluation-only field of tiny_spec's corrector (cadence=2, guidance=1,
#: ensemble_members=2)
OTHER = {"cadence": 7, "guidance": 0.25, "ensemble_members": 5}


@pytest.fixture(scope="module")
def split():
    return synthetic_split()


def _train(spec, split):
    torch.set_num_threads(1)
    t = Trainer(spec, split)
    rows = [t.train_step() for _ in range(STEPS)]
    return ([p.detach().clone() for p in t.modules.parameters()],
            [p.detach().clone() for p in t.ema.module.parameters()],
            [(r["loss"], r["loss_corrector"]) for r in rows],
            t.sampler.probabilities().tolist())


def _same(a, b) -> bool:
    return (all(torch.equal(x, y) for x, y in zip(a[0], b[0], strict=True))
            and all(torch.equal(x, y) for x, y in zip(a[1], b[1], strict=True))
            and a[2:] == b[2:])


@pytest.fixture(scope="module")
def reference(split):
    return _train(tiny_spec(), split)


def test_every_dropped_field_has_another_value_here():
    assert set(OTHER) == set(EVALUATION_FIELDS["corrector"]) and set(EVALUATION_FIELDS) == {
        "corrector"}


def test_training_does_not_read_what_training_spec_drops(split, reference):
    """The dropped fields all at once, and the run's labels (run, round, nominal), train the
    same weights, EMA, losses and sampler state bit for bit; the training spec and its identity
    are the same."""
    spec = tiny_spec(run="another run")
    spec["round"], spec["nominal"] = "round_x", {"cadence": 32}
    spec["corrector"].update(OTHER)
    assert training_spec(spec) == training_spec(tiny_spec())
    assert training_identity(spec) == training_identity(tiny_spec())
    assert _same(_train(spec, split), reference)


@pytest.mark.parametrize("field,value", [("steps", 2), ("sigma_min", 0.05)])
def test_a_corrector_field_training_spec_keeps_changes_training(split, reference, field, value):
    """steps and sigma_min shape the denoiser's loss: kept, and they do change training."""
    spec = tiny_spec()
    assert spec["corrector"][field] != value
    spec["corrector"][field] = value
    assert field in training_spec(spec)["corrector"]
    assert training_identity(spec) != training_identity(tiny_spec())
    assert not _same(_train(spec, split), reference)


def test_seed_and_sizes_are_part_of_the_identity():
    base = training_identity(tiny_spec())
    other_seed = tiny_spec(seed=1)
    other_seed["seed"] = 1
    assert training_identity(other_seed) != base
    bigger = copy.deepcopy(tiny_spec())
    bigger["model"]["model_dim"] = 20
    assert training_identity(bigger) != base
    # the machine is not: a run resumed elsewhere is the same training
    assert training_identity(tiny_spec(threads=2)) == base


def test_declared_stage_agrees_with_what_training_reads():
    """knobs.schema.yaml's `stage: evaluation` is exactly the knobs whose field training_spec
    drops (and test_knob_effects checks each declaration against the trainer)."""
    evaluation = {k for k, d in K.REGISTRY.items() if d.stage == "evaluation"}
    assert evaluation == set(K.KNOBS) - set(training_knobs())
    assert evaluation >= {"cadence", "guidance"}


def test_evaluation_settings_are_the_dropped_fields():
    spec = tiny_spec()
    spec["corrector"].update(OTHER)
    assert evaluation_settings(spec) == {"corrector": OTHER}


def test_a_finished_training_of_the_same_identity_is_found_and_copied(tmp_path):
    from physweep.train.shared import find_trained, record_identity, reuse

    trainings = tmp_path / "trainings"
    done = trainings / "aaaaaaaaaaaa" / "probe"
    done.mkdir(parents=True)
    for name in ("checkpoint.pt", "train_log.nc"):
        (done / name).write_bytes(name.encode())
    mine = trainings / "bbbbbbbbbbbb" / "probe"
    assert find_trained(mine, "id1") is None  # nothing recorded yet: an unfinished stage
    record_identity(done, "id1")
    assert find_trained(mine, "id2") is None
    assert find_trained(mine, "id1") == done
    assert find_trained(done, "id1") is None  # not itself
    assert find_trained(trainings / "bbbbbbbbbbbb" / "final", "id1") is None  # other stage
    reuse(done, {"checkpoint.pt": mine / "checkpoint.pt", "train_log.nc": mine / "log.nc"})
    assert (mine / "checkpoint.pt").read_bytes() == b"checkpoint.pt"
    assert (mine / "checkpoint.pt").stat().st_ino != (done / "checkpoint.pt").stat().st_ino
    record_identity(mine, "id1", reused_from=str(done))
    # forcing the original: it retrains, it does not copy its copy back
    assert find_trained(done, "id1") is None
    (done / "checkpoint.pt").unlink()  # a forced rerun deleted it: not complete any more
    assert find_trained(mine, "id1") is None


def test_a_training_of_an_earlier_round_on_the_same_data_is_found(tmp_path):
    """Round B's baseline replicate at seed 0 is round A's winning training: found across the
    rounds of the results directory whose data the stage trains on, the own round first; never
    one trained before that data was written (a round left from before the data changed), nor
    one in another results directory or when the data lies elsewhere."""
    import os

    from physweep.train.shared import find_trained, record_identity

    results = tmp_path / "results"

    def trained(round_name: str, training: str, mtime: float):
        stage = results / round_name / "trainings" / training / "final"
        stage.mkdir(parents=True)
        for name in ("checkpoint.pt", "train_log.nc"):
            (stage / name).write_bytes(name.encode())
            os.utime(stage / name, (mtime, mtime))
        record_identity(stage, "id1")
        return stage

    def data(where, mtime: float):
        (where / "train.nc").parent.mkdir(parents=True, exist_ok=True)
        (where / "train.nc").write_bytes(b"")
        os.utime(where / "train.nc", (mtime, mtime))
        return where

    mine = results / "round_b" / "trainings" / "bbbbbbbbbbbb" / "final"
    demo = data(results / "data" / "demo", 1000.0)
    assert find_trained(mine, "id1", data_dir=demo) is None
    a = trained("round_a", "aaaaaaaaaaaa", 2000.0)
    assert find_trained(mine, "id1", data_dir=demo) == a
    assert find_trained(mine, "id1") is None  # without the data: the own round only
    assert find_trained(mine, "id1", data_dir=data(tmp_path / "data" / "demo", 1000.0)) is None
    data(demo, 3000.0)  # the data changed after round A trained
    assert find_trained(mine, "id1", data_dir=demo) is None
    data(demo, 1000.0)
    own = trained("round_b", "cccccccccccc", 2000.0)
    assert find_trained(mine, "id1", data_dir=demo) == own  # the own round first
    elsewhere = tmp_path / "other" / "round_b" / "trainings" / "bbbbbbbbbbbb" / "final"
    assert find_trained(elsewhere, "id1", data_dir=demo) is None  # another results directory
