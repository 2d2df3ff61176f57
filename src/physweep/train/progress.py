"""A training job's progress file: ``<checkpoint dir>/progress.json``, rewritten while it trains.

The netCDF training log is written once, at the end of a training job, and the checkpoint only
at the end (or every ``checkpoint_every`` steps, to ``<checkpoint>.partial``), both atomically.
So that ``physweep status`` can show where a job is without opening either, the trainer also
writes this small JSON file, atomically (``physweep.io.write_json``: a temporary file renamed
over the old one, so a reader sees the previous or the next version, never half of one) and at
a fixed wall-clock cadence: after the first step, then at most every ``PROGRESS_EVERY_S``
seconds (and at every periodic checkpoint), and once more when the job ends. Reading it never
touches the trainer's files, so it cannot disturb training.

No torch import here: ``physweep status`` reads these files.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from physweep.io import write_json

PROGRESS_NAME = "progress.json"
#: seconds between two progress writes of a training job (plus the first step and the end)
PROGRESS_EVERY_S = 10.0
FORMAT = "physweep-progress-1"


class ProgressWriter:
    """Rewrites one progress file at most every ``every_s`` seconds of wall clock.

    ``step(step, loss, step_time_s)`` after every optimizer step; ``finish(status, step)`` at
    the end. The file holds: ``run``, ``step`` (optimizer steps done), ``stop_step`` (where this
    job stops: the probe point or the end), ``total_steps`` (the run's budget), ``loss``,
    ``s_per_step`` and ``tokens_per_s`` (means over the steps since the previous write),
    ``eta_s`` (to ``stop_step`` at this job's mean speed so far), ``status`` (``training`` while
    it trains, then the trainer's ``ok`` | ``diverged`` | ``preempted``), ``started`` and
    ``time`` (Unix seconds), ``host``, ``pid``, ``batch_tokens``, ``budget_tokens``.
    """

    def __init__(self, path: str | os.PathLike[str], run: str, stop_step: int, total_steps: int,
                 batch_tokens: int, budget_tokens: int, every_s: float = PROGRESS_EVERY_S,
                 clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.every_s = float(every_s)
        self.clock = clock
        self.started = clock()
        self.base = {"format": FORMAT, "run": run, "stop_step": int(stop_step),
                     "total_steps": int(total_steps), "batch_tokens": int(batch_tokens),
                     "budget_tokens": int(budget_tokens), "started": self.started,
                     "host": platform.node(), "pid": os.getpid()}
        self.last_write: float | None = None
        self.first_step: int | None = None
        self.window_steps = 0
        self.window_s = 0.0
        self.window_loss = 0.0
        self.window_finite = 0
        self.job_steps = 0
        self.job_s = 0.0
        self.loss = math.nan
        self.s_per_step = math.nan
        self.writes = 0

    def step(self, step: int, loss: float, step_time_s: float, force: bool = False) -> bool:
        """Account one optimizer step; write the file when it is due. True when written."""
        if math.isfinite(float(loss)):
            self.window_loss += float(loss)
            self.window_finite += 1
        else:
            self.loss = math.nan  # a non-finite step shows as such
        self.window_steps += 1
        self.window_s += float(step_time_s)
        self.job_steps += 1
        self.job_s += float(step_time_s)
        now = self.clock()
        if not force and self.last_write is not None and now - self.last_write < self.every_s:
            return False
        self._write(step, "training", now)
        return True

    def finish(self, status: str, step: int) -> None:
        self._write(step, status, self.clock())

    def _write(self, step: int, status: str, now: float) -> None:
        if self.window_steps:
            self.s_per_step = self.window_s / self.window_steps
            if self.window_finite == self.window_steps:
                self.loss = self.window_loss / self.window_finite
        tokens_per_s = (self.base["batch_tokens"] / self.s_per_step
                        if self.s_per_step > 0 else math.nan)
        mean = self.job_s / self.job_steps if self.job_steps else math.nan
        left = max(0, self.base["stop_step"] - int(step))
        data = {**self.base, "step": int(step), "loss": _finite(self.loss),
                "s_per_step": _finite(self.s_per_step), "tokens_per_s": _finite(tokens_per_s),
                "eta_s": _finite(mean * left) if status == "training" else 0.0,
                "status": status, "time": now}
        write_json(self.path, data)
        self.last_write = now
        self.window_steps, self.window_s, self.window_loss, self.window_finite = 0, 0.0, 0.0, 0
        self.writes += 1


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def read_progress(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The progress file's content, or None when it is absent or not one (never raises)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    return data
