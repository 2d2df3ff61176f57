"""Shared fixtures: the repository's own config, loaded as Snakemake would."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture()
def base_config() -> dict:
    return copy.deepcopy(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))


@pytest.fixture()
def wcfg(base_config):
    from physweep.plan.config import load_workflow_config

    return load_workflow_config(base_config, ROOT)
