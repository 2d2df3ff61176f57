import math
import sys
import types

import pytest

from physweep.train import telemetry as T

# ----------------------------------------------------------------------------- fakes


class FakeClock:
    def __init__(self):
        self.ticks = 0  # integer ticks of 10 ms, to keep the fake exact
        self.dt = 0.01

    def __call__(self):
        return self.ticks * self.dt


class FakeGpu:
    """True energy grows at ``power`` W; the counter only refreshes every ``update_ticks``."""

    def __init__(self, clock, power=200.0, update_ticks=10, offset_mj=123_456_789):
        self.clock, self.power = clock, power
        self.update_ticks, self.offset_mj = update_ticks, offset_mj
        self.reads = 0

    def counter_mj(self):
        self.reads += 1
        last_update = (self.clock.ticks // self.update_ticks) * self.update_ticks
        return self.offset_mj + int(round(self.power * last_update * self.clock.dt * 1000))


def fake_nvml(gpus, *, supported=True):
    mod = types.ModuleType("pynvml")
    mod.calls = []

    class NVMLError(Exception):
        pass

    mod.NVMLError = NVMLError
    mod.nvmlInit = lambda: None

    def by_index(i):
        mod.calls.append(("index", i))
        return gpus[i]

    def by_uuid(u):
        mod.calls.append(("uuid", u))
        return gpus[int(u.split("-")[-1])]

    def by_pci(bus):
        raise NVMLError("not found")

    def energy(handle):
        if not supported:
            raise NVMLError("Not Supported")
        return handle.counter_mj()

    mod.nvmlDeviceGetHandleByIndex = by_index
    mod.nvmlDeviceGetHandleByUUID = by_uuid
    mod.nvmlDeviceGetHandleByPciBusId = by_pci
    mod.nvmlDeviceGetTotalEnergyConsumption = energy
    mod.nvmlDeviceGetCount = lambda: len(gpus)
    mod.nvmlDeviceGetName = lambda h: b"NVIDIA Fake H100"
    return mod


@pytest.fixture
def gpu_env(monkeypatch):
    clock = FakeClock()
    gpus = [FakeGpu(clock, offset_mj=10**9 * (k + 1)) for k in range(4)]
    mod = fake_nvml(gpus)
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return clock, gpus, mod


# ----------------------------------------------------------------------------- NVML


def test_nvml_meter_reads_joules_since_construction(gpu_env):
    clock, gpus, _ = gpu_env
    meter = T.EnergyMeter("cuda:0")
    assert meter.source == "nvml"
    assert meter.read_joules() == 0.0
    clock.ticks = 100  # 1 s at 200 W
    assert meter.read_joules() == pytest.approx(200.0)


def test_nvml_respects_cuda_visible_devices(gpu_env, monkeypatch):
    clock, gpus, mod = gpu_env
    gpus[3].power = 50.0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    meter = T.EnergyMeter("cuda:1")
    assert ("index", 3) in mod.calls
    clock.ticks = 100
    assert meter.read_joules() == pytest.approx(50.0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-fake-1")
    T.EnergyMeter("cuda:0")
    assert ("uuid", "GPU-fake-1") in mod.calls


def test_windowed_energy_differencing(gpu_env):
    clock, gpus, _ = gpu_env
    gpus[0].update_ticks = 7  # counter refreshes every 70 ms, steps take 10 ms
    win = T.WindowedEnergy(T.EnergyMeter("cuda:0"), min_window_s=1.0, min_steps=10, clock=clock)
    values = []
    for _ in range(1000):
        clock.ticks += 1  # one 10 ms step at 200 W = 2 J/step
        values.append(win.step())
    finite = [v for v in values if not math.isnan(v)]
    assert len(finite) == win.windows >= 8
    # each value is one window's mean; the coarse counter makes single windows a little off...
    assert all(abs(v - 2.0) / 2.0 < 0.1 for v in finite)
    # ...but windows are chained, so the total is exact up to the last counter update
    assert win.joules_per_step() == pytest.approx(2.0, rel=0.01)
    assert win.total_joules() == pytest.approx(2000.0, rel=0.01)
    # NaN for every step that does not close a window, values only at closes
    first = next(i for i, v in enumerate(values) if not math.isnan(v))
    assert first >= 99  # >= 1 s of 10 ms steps
    assert all(math.isnan(v) for v in values[:first])
    assert win.last_window_steps >= 100 and win.last_window_s >= 1.0


def test_windowed_energy_waits_for_counter_tick(gpu_env):
    clock, gpus, _ = gpu_env
    gpus[0].update_ticks = 300  # counter updates every 3 s only
    win = T.WindowedEnergy(T.EnergyMeter("cuda:0"), min_window_s=1.0, min_steps=10, clock=clock)
    out = []
    for _ in range(299):
        clock.ticks += 1
        out.append(win.step())
    assert all(math.isnan(v) for v in out)  # window long enough but counter has not ticked
    assert win.total_joules() is None and win.joules_per_step() is None
    clock.ticks += 1
    v = win.step()
    assert v == pytest.approx(2.0)  # 600 J over 300 steps
    assert win.last_window_steps == 300


def test_windowed_energy_min_steps(gpu_env):
    clock, gpus, _ = gpu_env
    gpus[0].update_ticks = 1
    win = T.WindowedEnergy(T.EnergyMeter("cuda:0"), min_window_s=0.0, min_steps=10, clock=clock)
    out = []
    for _ in range(30):
        clock.ticks += 1
        out.append(win.step())
    closes = [i for i, v in enumerate(out) if not math.isnan(v)]
    assert closes == [9, 19, 29]
    assert out[9] == pytest.approx(2.0)


def test_nvml_unsupported_is_none_not_zero(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    clock = FakeClock()
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([FakeGpu(clock)], supported=False))
    meter = T.EnergyMeter("cuda:0")
    assert meter.source == "none" and meter.read_joules() is None
    assert "Not Supported" in meter.error
    win = T.WindowedEnergy(meter, min_window_s=0.0, min_steps=1, clock=clock)
    for _ in range(5):
        clock.ticks += 10
        assert math.isnan(win.step())
    assert win.total_joules() is None and win.joules_per_step() is None


def test_nvml_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    meter = T.EnergyMeter("cuda:0")
    assert meter.source == "none" and meter.read_joules() is None


# ----------------------------------------------------------------------------- RAPL


def _zone(root, name, energy, max_range=1_000_000):
    d = root / name
    d.mkdir(parents=True)
    (d / "energy_uj").write_text(f"{energy}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return d


def test_rapl_sums_packages_and_unwraps(tmp_path):
    z0 = _zone(tmp_path, "intel-rapl:0", 990_000)
    z1 = _zone(tmp_path, "intel-rapl:1", 5_000)
    sub = _zone(tmp_path, "intel-rapl:0:0", 7)  # a sub-zone (core/dram): not summed
    meter = T.EnergyMeter("cpu", rapl_root=tmp_path)
    assert meter.source == "rapl"
    assert meter.read_joules() == 0.0
    (z0 / "energy_uj").write_text("20000\n")  # wrapped: 10_000 to the top + 20_000 = 30_000 uJ
    (z1 / "energy_uj").write_text("15000\n")  # +10_000 uJ
    (sub / "energy_uj").write_text("999999\n")
    assert meter.read_joules() == pytest.approx(0.04)
    (z0 / "energy_uj").write_text("520000\n")  # +500_000 uJ
    assert meter.read_joules() == pytest.approx(0.54)


def test_rapl_missing_is_none(tmp_path):
    meter = T.EnergyMeter("cpu", rapl_root=tmp_path / "absent")
    assert meter.source == "none"
    assert meter.read_joules() is None
    win = T.WindowedEnergy(meter, min_window_s=0.0, min_steps=1)
    assert math.isnan(win.step())
    assert win.total_joules() is None and win.joules_per_step() is None


def test_rapl_unreadable_zone_skipped(tmp_path):
    d = tmp_path / "intel-rapl:0"
    d.mkdir()
    (d / "energy_uj").mkdir()  # reading a directory raises, like a root-only file
    (d / "max_energy_range_uj").write_text("100\n")
    assert T.EnergyMeter("cpu", rapl_root=tmp_path).source == "none"


def test_other_device_is_none():
    assert T.EnergyMeter("meta").source == "none"


# ----------------------------------------------------------------------------- memory, hardware


def test_peak_memory_cpu():
    import numpy as np

    before = T.peak_memory_mb("cpu")
    assert before > 10  # the interpreter + torch alone
    a = np.ones(64 * 2**20 // 8)  # touch 64 MiB
    a += 1
    assert T.peak_memory_mb(torch_device_cpu()) >= before
    del a


def torch_device_cpu():
    import torch

    return torch.device("cpu")


def test_hardware_description_cpu():
    desc = T.hardware_description("cpu")
    assert "cores" in desc and desc.strip()


def test_hardware_description_gpu_via_nvml(gpu_env):
    assert "NVIDIA Fake H100" in T.hardware_description()
