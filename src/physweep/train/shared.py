"""Reusing a finished training of the same identity (a shared training, issue #12).

The planner shares a training between runs whose training specs agree at plan time. A run whose
trained values wait for an earlier winner (round A's cadence block takes the optimizer block's
best LR and warmup) gets a training of its own at plan time, yet once the winner is known its
training spec is often one the round has already trained (the winner's own). Every finished
training stage records its identity (``physweep.plan.spec.training_identity``) beside its
checkpoint; a training job whose identity is already recorded by another training of the round
takes (copies) that checkpoint and log instead of training again.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

IDENTITY_FILE = "identity.json"
TRAININGS_DIR = "trainings"  # results/<round>/trainings/<training>/<stage>
STAGE_FILES = ("checkpoint.pt", "train_log.nc")


def record_identity(stage_dir: Path, identity: str, reused_from: str | None = None) -> None:
    """Written last, after the stage's checkpoint and log: a stage with it is complete."""
    data = {"identity": identity, "reused_from": reused_from}
    tmp = Path(stage_dir) / (IDENTITY_FILE + ".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True) + "\n")
    os.replace(tmp, Path(stage_dir) / IDENTITY_FILE)


def find_trained(stage_dir: Path, identity: str) -> Path | None:
    """Another training of the same round (``<trainings>/<other>/<stage>``) that trained this
    stage with this identity (not by copying), or None."""
    stage_dir = Path(stage_dir)
    trainings = stage_dir.parent.parent
    if trainings.name != TRAININGS_DIR:  # not the workflow's layout: nothing to share with
        return None
    for other in sorted(trainings.glob(f"*/{stage_dir.name}/{IDENTITY_FILE}")):
        if other.parent.parent == stage_dir.parent:
            continue
        try:
            record = json.loads(other.read_text())
        except (OSError, ValueError):
            continue
        # only a stage that trained (not one that was itself copied): forcing the training a
        # copy came from retrains it rather than copying the copy back
        if record.get("reused_from"):
            continue
        if record.get("identity") == identity and all((other.parent / f).exists()
                                                      for f in STAGE_FILES):
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
