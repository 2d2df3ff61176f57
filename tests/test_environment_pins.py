"""The rules' conda environment pins what pyproject.toml pins (snakemake and its executor plugin
run the workflow, outside the rules' environment)."""

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE_RULES = ("snakemake", "snakemake-executor-plugin-slurm")


def test_rule_environment_has_the_project_pins():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "envs" / "physweep.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {str(x).replace(" ", "") for x in pip}
    missing = [d for d in deps if d.replace(" ", "") not in listed
               and not d.startswith(OUTSIDE_RULES)]
    assert not missing, f"envs/physweep.yaml lacks {missing} (pinned in pyproject.toml)"
