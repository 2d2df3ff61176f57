"""One training job of the workflow: train a training to the probe point, or resume it to the end.

``workflow/scripts/train.py`` only passes Snakemake's inputs, outputs and params here.

Preemption (SIGTERM / SIGUSR1, e.g. a SLURM requeue or ``scancel --signal=USR1``): the trainer
finishes its step and saves everything to ``<checkpoint>.partial`` next to the output, and the
job exits with PREEMPTED_EXIT_CODE (75). The next attempt of the same job (Snakemake
``--retries``, a SLURM requeue) resumes from that file -- bit for bit the same result as an
uninterrupted run -- and renames it to the output checkpoint when done. The partial file is not
a Snakemake output, so a failed attempt's clean-up leaves it in place; one written for another
run spec is discarded. The comparison is on the run's identity (``run_identity``: the spec
without the machine), so an attempt with another thread count or device still resumes; the
job's threads are the machine's and go to the trainer, not into the spec.

A training whose identity another training has already trained -- in the round (a block that
takes an earlier block's winner values, which that winner trained) or in an earlier round of the
same results directory (a baseline replicate at the previous round's winning values), on the
same data -- copies it instead of training (``physweep.train.shared``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from physweep.model.surrogate import load_checkpoint
from physweep.train.loop import PREEMPTED_EXIT_CODE, run_identity, train_run
from physweep.train.shared import find_trained, record_identity, reuse


def resume_point(partial: Path, spec: dict[str, Any], probe: Path | None,
                 log: logging.Logger) -> Path | None:
    """Where the attempt starts: a preempted attempt's partial checkpoint of the same run
    identity, else the probe checkpoint (a continuation), else None (from scratch). A partial
    file written for another spec is discarded."""
    if partial.exists():
        saved = load_checkpoint(partial)
        same = run_identity(saved.get("spec") or {}) == run_identity(spec)
        if same:
            log.info("resuming the preempted attempt from %s (step %d)", partial, saved["step"])
            return partial
        log.warning("discarding %s: written for another run spec", partial)
        partial.unlink()
    return probe


def run_training_job(spec: dict[str, Any], identity: str, data_dir: Path, checkpoint: Path,
                     log_out: Path, stop_fraction: float, probe: Path | None, threads: int,
                     log: logging.Logger) -> int:
    """Train ``spec`` into ``checkpoint`` / ``log_out``; returns the job's exit code (0, or
    PREEMPTED_EXIT_CODE with the partial checkpoint kept for the next attempt)."""
    checkpoint, log_out = Path(checkpoint), Path(log_out)
    same = find_trained(checkpoint.parent, identity, data_dir=data_dir)
    if same is not None:
        reuse(same, {"checkpoint.pt": checkpoint, "train_log.nc": log_out})
        record_identity(checkpoint.parent, identity, reused_from=str(same))
        log.info("training identity %s already trained in %s: reused, not retrained",
                 identity, same)
        return 0
    partial = checkpoint.with_name(checkpoint.name + ".partial")
    result = train_run(spec, data_dir=data_dir, checkpoint_out=partial, log_out=log_out,
                       stop_fraction=stop_fraction,
                       resume_from=resume_point(partial, spec, probe, log), threads=threads)
    log.info("training finished: %s", result)
    if result["status"] == "preempted":
        log.warning("preempted at step %d: checkpoint kept in %s for the next attempt",
                    result["step"], partial)
        return PREEMPTED_EXIT_CODE
    os.replace(partial, checkpoint)
    record_identity(checkpoint.parent, identity)
    return 0
