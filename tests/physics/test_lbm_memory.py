"""A long force-tracking loop keeps the process's memory flat (issue #16).

``LBMSolver.step(n, track_force=True)`` used to keep one small force tensor per step alive until
the loop ended (a list stacked at the end). Each survivor pinned the top of glibc's heap above
the step's megabyte-sized temporaries, so their space was neither reused nor returned: the
resident set grew by ~0.3 MB per step at D = 16 (1.2 GB after 3,000 steps) and a D = 40
Schäfer–Turek row (~55,000 steps) reached 24 GB. The forces now go into one tensor allocated
before the loop. The check runs in a fresh interpreter so that earlier tests' heap does not
blur the measurement.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = r"""
import json, torch
from physweep.physics.lbm import LBMSolver, disk_link_fractions, disk_mask, parabolic_profile

def rss_mb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

torch.set_num_threads(1)
d = 16  # cells per diameter: 66 x 352 lattice, the Schafer-Turek layout of validation.py
ny, nx = round(4.1 * d), 22 * d
solid = disk_mask(ny, nx, 2.0 * d, 2.0 * d, 0.5 * d)
q = disk_link_fractions(ny, nx, 2.0 * d, 2.0 * d, 0.5 * d, solid)
u = 0.1 / 1.5
s = LBMSolver(solid, 3.0 * u * d / 100.0 + 0.5, parabolic_profile(ny, u), x_mode="open",
              incompressible=True, outlet="characteristic", wall_q=q)
s.initialize()
s.step(100, track_force=True)  # warm-up: allocator pools, first-call costs
before = rss_mb()
forces = s.step(1500, track_force=True)
after = rss_mb()
print(json.dumps({"before": before, "after": after, "shape": list(forces.shape),
                  "finite": bool(torch.isfinite(forces).all())}))
"""


def test_long_force_loop_memory_is_flat():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         env=env, timeout=300, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["shape"] == [1500, 1, 2] and res["finite"]
    # before the fix: +300 MB over these 1,500 steps; the f array itself is 1.7 MB
    assert res["after"] - res["before"] < 60, res
