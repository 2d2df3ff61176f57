"""Energy and memory telemetry for training and rollout loops.

Energy is *measured* or *missing*, never estimated:

* CUDA device: NVML ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since driver load,
  Volta and newer) through the ``pynvml`` module of the ``nvidia-ml-py`` package.
* CPU device: Intel/AMD RAPL package counters
  ``/sys/class/powercap/intel-rapl:N/energy_uj`` (microjoules, wrapping at
  ``max_energy_range_uj``), summed over packages, when readable (root-only on most systems
  and usually hidden in containers).
* Otherwise ``source == "none"`` and every reading is ``None`` (a NaN in logs), never 0.

A GPU run never falls back to RAPL: CPU package energy is not the energy of the GPU doing the
work. The counters update every ~20-100 ms, so energy is differenced over windows of many steps
(:class:`WindowedEnergy`), never per step.
"""

from __future__ import annotations

import importlib
import math
import os
import platform
import re
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "EnergyMeter",
    "WindowedEnergy",
    "hardware_description",
    "live_tensor_bytes",
    "measure_step_memory",
    "peak_memory_mb",
    "step_peak_bytes",
]

RAPL_ROOT = Path("/sys/class/powercap")
_RAPL_PACKAGE = re.compile(r"^intel-rapl:\d+$")  # packages only, not sub-zones intel-rapl:N:M


def _as_device(device: Any) -> torch.device:
    if device is None:
        return torch.device("cpu")
    return device if isinstance(device, torch.device) else torch.device(device)


# ----------------------------------------------------------------------------- NVML


def _import_pynvml():
    try:
        return importlib.import_module("pynvml")
    except Exception:  # noqa: BLE001 - ImportError or a broken install: energy is missing
        return None


def _pci_bus_id(index: int) -> str | None:
    """PCI bus id ("00000000:3B:00.0") of torch's CUDA device ``index``, if torch exposes it."""
    try:
        props = torch.cuda.get_device_properties(index)
        return f"{props.pci_domain_id:08X}:{props.pci_bus_id:02X}:{props.pci_device_id:02X}.0"
    except Exception:  # noqa: BLE001 - no CUDA / old torch / attribute missing
        return None


def _nvml_handle(nvml, index: int):
    """NVML handle of torch's CUDA device ``index``.

    Torch numbers devices *after* CUDA_VISIBLE_DEVICES (and CUDA_DEVICE_ORDER) are applied;
    NVML ignores both. So: match by PCI bus id when torch can give it (exact), else map through
    CUDA_VISIBLE_DEVICES (integer indices or GPU-/MIG- UUIDs), else use the index as is.
    """
    bus = _pci_bus_id(index)
    if bus is not None:
        try:
            return nvml.nvmlDeviceGetHandleByPciBusId(bus)
        except Exception:  # noqa: BLE001
            pass
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip():
        entries = [e.strip() for e in visible.split(",") if e.strip()]
        if index >= len(entries):
            raise IndexError(f"cuda:{index} not in CUDA_VISIBLE_DEVICES={visible!r}")
        entry = entries[index]
        if entry.isdigit():
            return nvml.nvmlDeviceGetHandleByIndex(int(entry))
        return nvml.nvmlDeviceGetHandleByUUID(entry)
    return nvml.nvmlDeviceGetHandleByIndex(index)


class _NvmlCounter:
    """Cumulative joules from NVML's total-energy counter (64-bit mJ, no wrap)."""

    source = "nvml"

    def __init__(self, device: torch.device):
        nvml = _import_pynvml()
        if nvml is None:
            raise RuntimeError("pynvml (nvidia-ml-py) not importable")
        nvml.nvmlInit()
        index = device.index if device.index is not None else _current_cuda_index()
        self._nvml = nvml
        self._handle = _nvml_handle(nvml, index)
        self._base_mj = self._raw()  # raises NVMLError_NotSupported on pre-Volta GPUs

    def _raw(self) -> int:
        return int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))

    def read(self) -> float:
        return (self._raw() - self._base_mj) / 1000.0


def _current_cuda_index() -> int:
    try:
        return torch.cuda.current_device()
    except Exception:  # noqa: BLE001
        return 0


# ----------------------------------------------------------------------------- RAPL


class _RaplCounter:
    """Cumulative joules summed over RAPL packages, unwrapping each package counter.

    Wrap-around is detected per read (a decrease means the counter passed
    ``max_energy_range_uj``), so it must be read at least once per wrap period (minutes at
    full load); :class:`WindowedEnergy` reads it every window.
    """

    source = "rapl"

    def __init__(self, root: Path = RAPL_ROOT):
        zones = sorted(p for p in Path(root).glob("intel-rapl:*") if _RAPL_PACKAGE.match(p.name))
        self._zones: list[tuple[Path, int]] = []
        for zone in zones:
            energy = zone / "energy_uj"
            try:
                int(energy.read_text())
                max_range = int((zone / "max_energy_range_uj").read_text())
            except (OSError, ValueError):
                continue  # unreadable (root-only since CVE-2020-8694) or malformed
            self._zones.append((energy, max_range))
        if not self._zones:
            raise RuntimeError(f"no readable RAPL package counters under {root}")
        self._last = [self._read_zone(p) for p, _ in self._zones]
        self._total_uj = 0

    @staticmethod
    def _read_zone(path: Path) -> int:
        return int(path.read_text())

    def read(self) -> float:
        for k, (path, max_range) in enumerate(self._zones):
            now = self._read_zone(path)
            delta = now - self._last[k]
            if delta < 0:  # wrapped past max_energy_range_uj
                delta += max_range
            self._total_uj += delta
            self._last[k] = now
        return self._total_uj / 1e6


# ----------------------------------------------------------------------------- meter


class EnergyMeter:
    """Cumulative energy of ``device`` since construction.

    ``source`` is ``"nvml"`` (CUDA device with a readable NVML energy counter), ``"rapl"`` (CPU
    device with readable RAPL package counters) or ``"none"``. :meth:`read_joules` returns the
    joules since construction, or ``None`` when no counter is available or a read fails -- never
    0 for "unavailable" and never an estimate. ``rapl_root`` is for tests.
    """

    def __init__(self, device: Any = "cpu", *, rapl_root: str | os.PathLike[str] | None = None):
        self.device = _as_device(device)
        self.error: str | None = None
        self._counter: _NvmlCounter | _RaplCounter | None = None
        try:
            if self.device.type == "cuda":
                self._counter = _NvmlCounter(self.device)
            elif self.device.type == "cpu":
                self._counter = _RaplCounter(Path(rapl_root) if rapl_root else RAPL_ROOT)
        except Exception as exc:  # noqa: BLE001 - any failure means "not measured"
            self.error = f"{type(exc).__name__}: {exc}"
            self._counter = None
        self.source = self._counter.source if self._counter is not None else "none"

    def read_joules(self) -> float | None:
        if self._counter is None:
            return None
        try:
            value = float(self._counter.read())
        except Exception as exc:  # noqa: BLE001
            self.error = f"{type(exc).__name__}: {exc}"
            return None
        return value if math.isfinite(value) else None

    def __repr__(self) -> str:
        return f"EnergyMeter(device={self.device}, source={self.source!r})"


class WindowedEnergy:
    """Per-step energy from a coarse cumulative counter, by differencing over windows.

    Call :meth:`step` once after every training/rollout step. Steps are grouped into
    consecutive, gap-free windows. The current window *closes* at the first step at which all of

    1. it holds ``>= min_steps`` steps,
    2. ``>= min_window_s`` seconds have passed since it opened, and
    3. the counter reads higher than at the window's opening (it has ticked),

    hold. That call returns the window's ``joules / steps`` (the mean J/step of the steps in the
    window, including this one) and opens the next window at the same counter reading; every
    other call returns NaN. So a logged ``step()`` value is a per-step energy attributed to the
    window ending at that step, and NaN elsewhere -- including everywhere when the meter is
    unavailable. After a close, :attr:`last_window_joules`, :attr:`last_window_steps` and
    :attr:`last_window_s` describe that window.

    The counter is only read once conditions 1-2 hold, so the per-step overhead is one clock
    call. Counter readings lag the true energy by up to one update period (~20-100 ms for
    NVML); with windows of >= 1 s this is a few percent at most and, windows being chained,
    does not accumulate.
    """

    def __init__(
        self,
        meter: EnergyMeter,
        min_window_s: float = 1.0,
        min_steps: int = 10,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        if min_steps < 1:
            raise ValueError("min_steps must be >= 1")
        self.meter = meter
        self.min_window_s = float(min_window_s)
        self.min_steps = int(min_steps)
        self._clock = clock
        self.steps = 0
        self.windows = 0
        self.last_window_joules = math.nan
        self.last_window_steps = 0
        self.last_window_s = math.nan
        self._e0 = meter.read_joules()
        self._t_open = clock()
        self._e_open = self._e0
        self._n_open = 0

    def step(self) -> float:
        self.steps += 1
        self._n_open += 1
        if self._e0 is None or self._n_open < self.min_steps:
            return math.nan
        now = self._clock()
        if now - self._t_open < self.min_window_s:
            return math.nan
        energy = self.meter.read_joules()
        if energy is None or energy <= self._e_open:
            return math.nan  # unavailable now, or the counter has not ticked: keep growing
        joules = energy - self._e_open
        per_step = joules / self._n_open
        self.last_window_joules = joules
        self.last_window_steps = self._n_open
        self.last_window_s = now - self._t_open
        self.windows += 1
        self._e_open, self._t_open, self._n_open = energy, now, 0
        return per_step

    def total_joules(self) -> float | None:
        """Joules since construction (current counter reading), or None if not measured.

        ``None`` also while the counter has not ticked since construction: a zero reading
        means "below the counter's resolution", not "used no energy".
        """
        if self._e0 is None:
            return None
        energy = self.meter.read_joules()
        if energy is None or energy <= self._e0:
            return None
        return energy - self._e0

    def joules_per_step(self) -> float | None:
        """``total_joules() / steps`` over every step so far, or None if not measured."""
        total = self.total_joules()
        if total is None or self.steps == 0:
            return None
        return total / self.steps


# ----------------------------------------------------------------------------- memory, hardware


def peak_memory_mb(device: Any = "cpu") -> float:
    """Peak memory in MiB.

    CUDA: ``torch.cuda.max_memory_allocated(device)`` (tensors allocated by this process on that
    device; reset with ``torch.cuda.reset_peak_memory_stats``). CPU: the process's peak resident
    set size from ``resource.getrusage`` -- the high-water mark of the *whole process* since it
    started (interpreter, libraries, data), which cannot be reset.
    """
    device = _as_device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def live_tensor_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (an iterable; non-tensors skipped)."""
    seen: dict[int, int] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor):
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


def step_peak_bytes(fn: Callable[[], Any], device: Any = "cpu") -> tuple[int, Any]:
    """Peak of the tensor memory allocated by ``fn()`` above what was alive when it started,
    in bytes, and ``fn``'s result.

    CUDA: ``torch.cuda.max_memory_allocated`` minus ``memory_allocated`` before the call (the
    caching allocator's live blocks, not its cache). CPU: the process's resident set mixes
    tensors with the interpreter, libraries and what the C allocator keeps back, so the
    function records every allocation and free of PyTorch's CPU allocator with the profiler
    (``profile_memory=True``) and returns the maximum of their running sum -- the CPU analogue
    of ``max_memory_allocated``. Memory freed in ``fn`` that was allocated before it is not
    reported by the profiler (its size is unknown to it), so release what ``fn`` would free
    first (e.g. ``optimizer.zero_grad(set_to_none=True)``) for an exact figure.
    """
    dev = _as_device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        out = fn()
        torch.cuda.synchronize(dev)
        return int(torch.cuda.max_memory_allocated(dev) - base), out
    from torch._C._autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == DeviceType.CPU)
    cur = peak = 0
    for _, nbytes in events:
        cur += nbytes
        peak = max(peak, cur)
    return int(peak), out


def measure_step_memory(trainer: Any) -> dict[str, Any]:
    """Measured peak tensor memory (bytes) of one ``trainer.train_step()`` -- what
    ``physweep.plan.memory.training_memory`` predicts.

    ``static``: what lives across steps (parameters, buffers, the EMA copy, the optimizer
    state); ``step``: the peak the step allocates on top (:func:`step_peak_bytes`; the
    gradients are released first, as the step's ``zero_grad`` would); ``total`` = both. On CUDA
    ``static`` is every tensor allocated on the device before the step. Run at least one step
    before, so that the optimizer state exists. ``row`` is the step's log row.
    """
    trainer.optimizer.zero_grad(set_to_none=True)
    dev = trainer.device
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        static = torch.cuda.memory_allocated(dev)
    else:
        ema = trainer.ema.module
        static = live_tensor_bytes([
            *trainer.modules.parameters(), *trainer.modules.buffers(), *ema.parameters(),
            *ema.buffers(),
            *(v for st in trainer.optimizer.state.values() for v in st.values())])
    step, row = step_peak_bytes(trainer.train_step, dev)
    return {"static": int(static), "step": int(step), "total": int(static + step), "row": row}


def _cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _gpu_names() -> list[str]:
    try:
        if torch.cuda.is_available():
            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001
        pass
    nvml = _import_pynvml()
    if nvml is None:
        return []
    try:
        nvml.nvmlInit()
        names = []
        for i in range(nvml.nvmlDeviceGetCount()):
            name = nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(i))
            names.append(name.decode() if isinstance(name, bytes) else str(name))
        return names
    except Exception:  # noqa: BLE001
        return []


def hardware_description(device: Any = None) -> str:
    """Human-readable hardware line, e.g. ``"1x NVIDIA H100 80GB HBM3"`` or
    ``"Intel(R) Xeon(R) ... (2 cores usable of 64)"``.

    With ``device=None`` the GPU(s) are described when torch/NVML sees any, else the CPU; a
    ``cpu`` device always describes the CPU.
    """
    dev = None if device is None else _as_device(device)
    if dev is None or dev.type == "cuda":
        names = _gpu_names()
        if names:
            counts: dict[str, int] = {}
            for name in names:
                counts[name] = counts.get(name, 0) + 1
            return ", ".join(f"{n}x {name}" for name, n in counts.items())
    usable, total = _usable_cores(), os.cpu_count() or 1
    cores = f"{usable} cores" if usable == total else f"{usable} cores usable of {total}"
    return f"{_cpu_model()} ({cores})"
