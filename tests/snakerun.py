"""Running the workflow from tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
TINY = ROOT / "tests" / "workflow" / "tiny"


def snakemake(*args: str, cwd: Path = ROOT, timeout: int = 900, check: bool = True,
              env: dict | None = None, snakefile: Path | None = None
              ) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, "-s", str(snakefile or ROOT / "Snakefile"), *args]
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


def dry_run_jobs(output: str) -> list[dict]:
    """Every job block of a dry run: {"rule", "log", "output", "wildcards": {...},
    "resources": {...}, "priority"}."""
    jobs = []
    for block in re.split(r"\n(?=\[.*\]\n(?:local)?(?:checkpoint|rule) )", output):
        m = re.search(r"^(?:local)?(?:checkpoint|rule) (\w+):", block, re.M)
        if not m:
            continue
        job: dict = {"rule": m.group(1)}
        for key in ("log", "output"):
            line = re.search(rf"^\s+{key}: (.*)$", block, re.M)
            job[key] = line.group(1).strip() if line else None
        for key in ("wildcards", "resources"):
            line = re.search(rf"^\s+{key}: (.*)$", block, re.M)
            job[key] = dict(item.partition("=")[::2] for item in line.group(1).split(", ")
                            ) if line else {}
        line = re.search(r"^\s+priority: (.*)$", block, re.M)  # printed only when not 0
        job["priority"] = float(line.group(1)) if line else 0
        jobs.append(job)
    return jobs


def tiny_preset() -> dict:
    """The demo preset shrunk for workflow tests: smaller data, budget, batch and eval suites."""
    preset = yaml.safe_load((ROOT / "config" / "presets" / "demo.yaml").read_text())
    preset["sizes"]["budget_steps"] = {"scale": 0.0015, "multiple": 1}  # 20000 -> 30 steps
    preset["data"] = {"name": "channel_tiny", "n_train": 6, "n_test": 2, "n_ood": 2,
                      "n_snapshots": 12, "spinup_steps": 1500, "batch_size": 10,
                      "refine": 1, "compile": False}  # coarse and eager: seconds, not 20 s
    preset["train"]["points_per_sample"] = 128
    preset["sizes"]["batch_tokens"] = {"scale": 0.0078125, "multiple": 128}  # 512 = 4 x 128
    for suite in preset["eval"].values():
        suite.update(points=128, ensemble_members=2, horizon=4, long_horizon_from=3)
    preset["eval"]["small"]["n_traj"] = 2
    # the horizon map of the earlier demo (the tiny records have 12 snapshots)
    preset["sizes"]["max_horizon"] = {"map": {16: 2, 32: 4, 48: 6}}
    preset["eval"]["full"]["horizon"] = 8  # twice the training horizon (max_horizon 32 -> 4)
    preset["reference"]["steps"] = 10
    return preset


def write_tiny_config(work: Path) -> Path:
    """Write the tiny round (tests/workflow/tiny), its preset and a config into ``work``."""
    (work / "presets").mkdir(parents=True, exist_ok=True)
    (work / "rounds").mkdir(exist_ok=True)
    (work / "presets" / "tiny.yaml").write_text(yaml.safe_dump(tiny_preset()))
    shutil.copy(TINY / "round_t.yaml", work / "rounds" / "round_t.yaml")
    cfg = yaml.safe_load((TINY / "config.yaml").read_text())
    cfg.update(presets_dir=str(work / "presets"), rounds_dir=str(work / "rounds"))
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    return work / "config.yaml"


def tiny_training_of(config_file: Path, run: str, round_name: str = "round_t") -> str:
    """The training (key) of a run of the tiny round configured by ``config_file`` (as
    Snakemake sees it: the workflow's config.yaml updated by that file)."""
    from physweep.plan.config import load_workflow_config
    from physweep.plan.workflow import Workflow

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg.update(yaml.safe_load(Path(config_file).read_text()))
    return Workflow(load_workflow_config(cfg, ROOT)).training_of(round_name, run)


#: what a checkout needs to run the workflow (the package comes from the installed environment)
CHECKOUT_PARTS = ("Snakefile", "rules", "workflow", "config", "envs", "report", "profiles")


def write_tiny_checkout(dest: Path) -> Path:
    """A copy of the workflow in ``dest`` with the tiny round under ``dest/tiny``, configured by
    paths relative to the checkout (``tiny/config.yaml``): a checkout that can be moved.
    Run it from ``dest`` with ``snakefile=dest / "Snakefile"``. Returns the config path."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in CHECKOUT_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / part)
    tiny = dest / "tiny"
    (tiny / "presets").mkdir(parents=True, exist_ok=True)
    (tiny / "rounds").mkdir(exist_ok=True)
    (tiny / "presets" / "tiny.yaml").write_text(yaml.safe_dump(tiny_preset()))
    shutil.copy(TINY / "round_t.yaml", tiny / "rounds" / "round_t.yaml")
    cfg = yaml.safe_load((TINY / "config.yaml").read_text())
    cfg.update(presets_dir="tiny/presets", rounds_dir="tiny/rounds")  # relative to the checkout
    (tiny / "config.yaml").write_text(yaml.safe_dump(cfg))
    return tiny / "config.yaml"
