"""Reusing a finished training of the same identity (a shared training, issue #12).

The planner shares a training between runs whose training specs agree at plan time. A run whose
trained values wait for an earlier winner (round A's cadence block takes the optimizer block's
best LR and warmup) gets a training of its own at plan time, yet once the winner is known its
training spec is often one already trained: the winner's own, in the same round, or, for a
round's baseline replicate at seed 0, the previous round's winner (round B's baseline is round
A's winning training, round C's round B's). Every finished training stage records its identity
(``physweep.plan.spec.training_identity``) beside its checkpoint; a training job whose identity
is already recorded by another training of any round of the same results directory takes
(copies) that checkpoint and log instead of training again. Equal identities train bit for bit
the same weights on the same data, and a round reads its dataset from the results directory it
lives in.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

IDENTITY_FILE = "identity.json"
TRAININGS_DIR = "trainings"  # results/<round>/trainings/<training>/<stage>
DATA_DIR = "data"  # results/data/<dataset>: the data every round of a results directory reads
STAGE_FILES = ("checkpoint.pt", "train_log.nc")


def record_identity(stage_dir: Path, identity: str, reused_from: str | None = None) -> None:
    """Written last, after the stage's checkpoint and log: a stage with it is complete."""
    data = {"identity": identity, "reused_from": reused_from}
    tmp = Path(stage_dir) / (IDENTITY_FILE + ".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True) + "\n")
    os.replace(tmp, Path(stage_dir) / IDENTITY_FILE)


def find_trained(stage_dir: Path, identity: str, data_dir: Path | None = None) -> Path | None:
    """Another training (``<results>/<round>/trainings/<other>/<stage>``) that trained this
    stage with this identity (not by copying), or None: the stage's own round first, then, with
    ``data_dir`` the workflow's ``<results>/data/<dataset>`` of the same results directory (the
    data the stage trains on), the other rounds there. With ``data_dir``, a stage whose
    checkpoint is older than its ``train.nc`` was trained on earlier data (a round left from
    before the data changed) and does not count."""
    stage_dir = Path(stage_dir)
    trainings = stage_dir.parent.parent
    if trainings.name != TRAININGS_DIR:  # not the workflow's layout: nothing to share with
        return None
    own_round, not_before = trainings.parent, None
    rounds = [own_round]
    if data_dir is not None:
        data_dir, results = Path(data_dir), own_round.parent
        train = data_dir / "train.nc"
        not_before = train.stat().st_mtime if train.exists() else None
        if data_dir.parent.name == DATA_DIR and data_dir.parent.parent.resolve() == results.resolve():
            rounds += sorted(d for d in results.iterdir()
                             if d.is_dir() and d.resolve() != own_round.resolve())
    me = stage_dir.parent.resolve()
    for other in (p for r in rounds
                  for p in sorted(r.glob(f"{TRAININGS_DIR}/*/{stage_dir.name}/{IDENTITY_FILE}"))):
        if other.parent.parent.resolve() == me:  # (resolved: a link to it is not another)
            continue
        try:
            record = json.loads(other.read_text())
        except (OSError, ValueError):
            continue
        # only a stage that trained (not one that was itself copied): forcing the training a
        # copy came from retrains it rather than copying the copy back
        if record.get("reused_from"):
            continue
        if record.get("identity") != identity or not all((other.parent / f).exists()
                                                         for f in STAGE_FILES):
            continue
        if not_before is not None and (other.parent / STAGE_FILES[0]).stat().st_mtime < not_before:
            continue
        return other.parent
    return None


def reuse(source: Path, outputs: dict[str, Path]) -> None:
    """Copy the source stage's files to ``outputs`` (name in STAGE_FILES -> path). A copy, not
    a hard link: the copy must be newer than the job's inputs (Snakemake's mtime rule), and
    touching a link would make the source look newer than what was computed from it."""
    for name, dest in outputs.items():
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".reuse")
        shutil.copyfile(Path(source) / name, tmp)
        os.replace(tmp, dest)
