"""benchmarks/gpu_check.py --quick runs on CPU at the demo sizes and prints every row of its table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_quick_prints_every_row(tmp_path):
    out = tmp_path / "rows.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--quick",
                           "--device", "cpu", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    assert "=== physweep GPU check: CPU, preset demo" in text
    for case in ("fp32 eager: step", "fp32 eager: tokens/s", "fp32 eager: achieved",
                 "fp32 eager: MFU", "fp32 eager: peak memory", "fp32 eager: energy",
                 "bf16 autocast", "bf16 + torch.compile", "plain, 1 member",
                 "with corrector", "batch 6 on 64x128", "batch 24 on 64x128",
                 "3-run mini round"):
        assert case in text, case
    rows = {r["case"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["fp32 eager: step"]["value"] > 0
    assert rows["fp32 eager: achieved"]["value"] > 0  # FLOPs counted
    assert rows["fp32 eager: MFU"]["value"] is None  # no CPU peak: n/a, said so
    mem = rows["fp32 eager: peak memory"]
    ratio = float(mem["ratio"].split()[-1])
    assert 0.8 < ratio < 1.2, mem  # the plan's prediction against the measured peak
    assert rows["with corrector"]["value"] > 0 and "tax x" in rows["with corrector"]["ratio"]
    assert rows["batch 6 on 64x128"]["value"] > 0
    assert rows["3-run mini round"]["value"] is None and "--quick" in rows["3-run mini round"]["note"]
    print(f"\ngpu_check --quick: {wall:.0f} s\n{text[text.index('==='):]}")
