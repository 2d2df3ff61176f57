"""Shared set-up of Snakemake script jobs: logging to the job's log file, threads."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def start_job(log_path: str | Path, threads: int | None = None, gpu: bool = False
              ) -> logging.Logger:
    """Send logging (and uncaught tracebacks) to the job's log file; pin torch threads.

    ``gpu=True`` (training / evaluation jobs): before torch touches CUDA, lock one free local GPU
    and set CUDA_VISIBLE_DEVICES to it (``physweep.train.gpu_slots``; a no-op under SLURM, with
    CUDA_VISIBLE_DEVICES already set, or without a GPU).
    """
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path, mode="w")
    logging.basicConfig(level=logging.INFO, handlers=[handler, logging.StreamHandler(sys.stderr)],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.captureWarnings(True)
    log = logging.getLogger("physweep.job")

    def _excepthook(exc_type, exc, tb):
        log.error("job failed", exc_info=(exc_type, exc, tb))
        sys.__excepthook__(exc_type, exc, tb)

    sys.excepthook = _excepthook
    if gpu:
        from physweep.train.gpu_slots import acquire_gpu

        slot = acquire_gpu()
        if slot.index is None:
            log.info("GPU slot: none taken (%s)", slot.reason)
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    return log
