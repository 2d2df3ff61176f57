"""One GPU per local job: pick a free GPU and pin the process to it via CUDA_VISIBLE_DEVICES.

Snakemake's ``resources: gpu=1`` only *counts* GPUs; it does not say which one a local job may
use, so concurrent jobs would all land on GPU 0. ``acquire_gpu`` takes an exclusive
``fcntl.flock`` on ``<lock_dir>/gpu<i>.lock`` for the first free index ``i`` and sets
``CUDA_VISIBLE_DEVICES=i``. The lock belongs to the open file description: the kernel drops it
when the process exits, however it exits (SIGKILL and OOM kills included), so a killed job never
leaves a GPU marked busy.

Call it before anything touches ``torch.cuda``: CUDA reads CUDA_VISIBLE_DEVICES once, when it
initialises. It is a no-op (the environment is left as it is) when

* CUDA_VISIBLE_DEVICES is already set (by SLURM for ``--gpus``/``--gres`` jobs, or by the user),
* the process runs inside a SLURM job (the scheduler owns device assignment),
* no GPU exists (or ``PHYSWEEP_GPU_COUNT=0``),
* torch.cuda is already initialised (too late to choose; a warning is logged).

Environment: ``PHYSWEEP_GPU_COUNT`` overrides the detected GPU count (tests; hosts where
detection fails), ``PHYSWEEP_GPU_LOCK_DIR`` the lock directory (default
``$TMPDIR/physweep-gpu-slots-<uid>``, shared by every job of the user on this machine),
``PHYSWEEP_GPU_WAIT_S`` the longest wait for a free GPU (default: wait until one is free).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ENV_COUNT = "PHYSWEEP_GPU_COUNT"
ENV_LOCK_DIR = "PHYSWEEP_GPU_LOCK_DIR"
ENV_WAIT = "PHYSWEEP_GPU_WAIT_S"

#: slots held by this process: kept open for its lifetime (closing the fd drops the lock)
_HELD: list[GpuSlot] = []


@dataclass
class GpuSlot:
    """The outcome of ``acquire_gpu``: ``index`` is None when nothing was pinned (see reason)."""

    index: int | None
    reason: str
    path: Path | None = None
    fd: int | None = None

    def release(self) -> None:
        """Drop the lock (normally never needed: process exit releases it)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self in _HELD:
            _HELD.remove(self)


def gpu_count() -> int:
    """Number of NVIDIA GPUs on this machine, found without initialising CUDA."""
    override = os.environ.get(ENV_COUNT, "").strip()
    if override:
        return max(0, int(override))
    proc_dir = Path("/proc/driver/nvidia/gpus")
    if proc_dir.is_dir():
        return sum(1 for _ in proc_dir.iterdir())
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return 0
        return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
    return 0


def default_lock_dir() -> Path:
    env = os.environ.get(ENV_LOCK_DIR)
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / f"physweep-gpu-slots-{os.getuid()}"


def _cuda_initialised() -> bool:
    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_initialized())
    except Exception:  # noqa: BLE001 - a broken torch must not break the job here
        return False


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def acquire_gpu(count: int | None = None, lock_dir: str | Path | None = None,
                wait_s: float | None = None, poll_s: float = 0.5,
                env: dict | None = None) -> GpuSlot:
    """Lock a free GPU for this process and set CUDA_VISIBLE_DEVICES (in ``env``, default
    ``os.environ``) to its index. Waits (polling every ``poll_s``) while all are taken; raises
    TimeoutError after ``wait_s`` seconds (None: ``$PHYSWEEP_GPU_WAIT_S``, else no limit)."""
    env = os.environ if env is None else env
    if env.get("CUDA_VISIBLE_DEVICES") is not None:
        return GpuSlot(None, f"CUDA_VISIBLE_DEVICES already set ({env['CUDA_VISIBLE_DEVICES']!r})")
    if env.get("SLURM_JOB_ID"):
        return GpuSlot(None, "inside a SLURM job: the scheduler assigns devices")
    n = gpu_count() if count is None else count
    if n <= 0:
        return GpuSlot(None, "no GPU")
    if _cuda_initialised():
        log.warning("torch.cuda is already initialised: cannot pin this job to one GPU")
        return GpuSlot(None, "torch.cuda already initialised")
    if wait_s is None and env.get(ENV_WAIT):
        wait_s = float(env[ENV_WAIT])
    directory = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    directory.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    # start the scan at a pid-dependent index: fewer collisions when many jobs start together
    first = os.getpid() % n
    warned = False
    while True:
        for k in range(n):
            i = (first + k) % n
            path = directory / f"gpu{i}.lock"
            fd = _try_lock(path)
            if fd is not None:
                env["CUDA_VISIBLE_DEVICES"] = str(i)
                slot = GpuSlot(i, "locked", path, fd)
                _HELD.append(slot)
                log.info("GPU slot %d of %d (%s): CUDA_VISIBLE_DEVICES=%d", i, n, path, i)
                return slot
        waited = time.monotonic() - start
        if wait_s is not None and waited >= wait_s:
            raise TimeoutError(f"all {n} GPU slots in {directory} stayed busy for {waited:.0f} s")
        if not warned:
            log.warning("all %d GPU slots in %s are busy: waiting for one", n, directory)
            warned = True
        time.sleep(poll_s)
