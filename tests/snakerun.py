"""Running the workflow from tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def snakemake(*args: str, cwd: Path = ROOT, timeout: int = 900, check: bool = True,
              env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def jobs_of(output: str, rule: str) -> list[dict[str, str]]:
    """Parse a dry run's job blocks of ``rule`` into {wildcards..., resources...}."""
    jobs = []
    for block in re.split(r"\n(?=\[.*\]\n(?:local)?(?:checkpoint|rule) )", output):
        m = re.search(r"^(?:local)?(?:checkpoint|rule) (\w+):", block, re.M)
        if not m or m.group(1) != rule:
            continue
        job = {}
        for key in ("wildcards", "resources"):
            line = re.search(rf"^\s+{key}: (.*)$", block, re.M)
            if line:
                for item in line.group(1).split(", "):
                    k, _, v = item.partition("=")
                    job[k.strip()] = v.strip()
        jobs.append(job)
    return jobs
