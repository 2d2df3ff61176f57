"""GPU slots: one GPU per concurrent local job, released by the kernel when a holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from physweep.train import gpu_slots
from physweep.train.gpu_slots import acquire_gpu, gpu_count

HOLDER = """
import os, sys, time
from physweep.train.gpu_slots import acquire_gpu
slot = acquire_gpu(count=int(sys.argv[1]), lock_dir=sys.argv[2], wait_s=float(sys.argv[3]),
                   poll_s=0.05)
print(os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
time.sleep(float(sys.argv[4]))
"""


def _holder(count, lock_dir, wait_s=5.0, hold_s=60.0, env=None):
    env = {k: v for k, v in (env or os.environ).items()
           if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")}
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(count), str(lock_dir),
                             str(wait_s), str(hold_s)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _index(proc, timeout=20.0) -> int:
    line = proc.stdout.readline()
    assert line.strip(), f"holder printed nothing: {proc.stderr.read() if proc.poll() else ''}"
    return int(line)


@pytest.fixture()
def clean_env(monkeypatch):
    saved = dict(os.environ)  # acquire_gpu writes os.environ itself: restore it all afterwards
    for var in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", gpu_slots.ENV_COUNT,
                gpu_slots.ENV_WAIT, gpu_slots.ENV_LOCK_DIR):
        monkeypatch.delenv(var, raising=False)
    yield
    for slot in list(gpu_slots._HELD):
        slot.release()
    os.environ.clear()
    os.environ.update(saved)


def test_count_override_and_no_gpu_is_a_noop(clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv(gpu_slots.ENV_COUNT, "3")
    assert gpu_count() == 3
    monkeypatch.setenv(gpu_slots.ENV_COUNT, "0")
    slot = acquire_gpu(lock_dir=tmp_path)
    assert slot.index is None and "CUDA_VISIBLE_DEVICES" not in os.environ


def test_preset_devices_and_slurm_are_left_alone(clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    assert acquire_gpu(count=4, lock_dir=tmp_path).index is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert acquire_gpu(count=4, lock_dir=tmp_path).index is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert not list(tmp_path.iterdir())


def test_in_process_slots_are_distinct_and_time_out(clean_env, tmp_path):
    env_a, env_b, env_c = {}, {}, {}
    a = acquire_gpu(count=2, lock_dir=tmp_path, env=env_a)
    b = acquire_gpu(count=2, lock_dir=tmp_path, env=env_b)
    assert {a.index, b.index} == {0, 1}
    assert {env_a["CUDA_VISIBLE_DEVICES"], env_b["CUDA_VISIBLE_DEVICES"]} == {"0", "1"}
    with pytest.raises(TimeoutError):
        acquire_gpu(count=2, lock_dir=tmp_path, wait_s=0.2, poll_s=0.05, env=env_c)
    a.release()
    c = acquire_gpu(count=2, lock_dir=tmp_path, wait_s=1, env=env_c)
    assert c.index == a.index


def test_processes_get_distinct_gpus_and_a_killed_holder_frees_its_gpu(clean_env, tmp_path):
    procs = [_holder(3, tmp_path) for _ in range(3)]
    try:
        got = [_index(p) for p in procs]
        assert sorted(got) == [0, 1, 2]
        waiting = _holder(3, tmp_path, wait_s=30.0)  # all busy: it waits
        time.sleep(0.5)
        assert waiting.poll() is None
        victim = procs[1]
        victim.send_signal(signal.SIGKILL)  # no clean-up runs: the kernel drops the flock
        victim.wait(timeout=10)
        assert _index(waiting) == got[1]
        procs.append(waiting)
        late = _holder(3, tmp_path, wait_s=0.3)  # still all busy: gives up, clearly
        assert late.wait(timeout=20) != 0
        assert "TimeoutError" in late.stderr.read()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)


def test_cuda_visible_devices_is_set_before_torch_sees_cuda(clean_env, tmp_path):
    """A fresh process: the variable is in place before torch (and CUDA) is imported."""
    code = ("import os\nfrom physweep.train.gpu_slots import acquire_gpu\n"
            f"s = acquire_gpu(count=2, lock_dir={str(tmp_path)!r})\n"
            "v = os.environ['CUDA_VISIBLE_DEVICES']\nimport torch\n"
            "print(v, torch.cuda.is_initialized())\n")
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120, check=True).stdout.split()
    assert out[0] in ("0", "1") and out[1] == "False"


def test_start_job_pins_gpu_jobs_only(clean_env, monkeypatch, tmp_path):
    from physweep.jobs import start_job

    monkeypatch.setenv(gpu_slots.ENV_COUNT, "2")
    monkeypatch.setenv(gpu_slots.ENV_LOCK_DIR, str(tmp_path / "locks"))
    start_job(tmp_path / "a.log")
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    start_job(tmp_path / "b.log", gpu=True)
    assert os.environ["CUDA_VISIBLE_DEVICES"] in ("0", "1")
