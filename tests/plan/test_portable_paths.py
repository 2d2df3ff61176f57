"""Nothing in a run template or a plan record is an absolute path (Snakemake compares params:
an absolute path would rerun every job once the checkout moved)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from physweep.plan.config import load_workflow_config
from physweep.plan.spec import portable_path
from physweep.plan.table import plan_records
from physweep.plan.workflow import Workflow

ROOT = Path(__file__).resolve().parents[2]


def test_portable_path(tmp_path):
    root, cwd = tmp_path / "checkout", tmp_path / "work"
    assert portable_path(root / "config" / "presets" / "demo.yaml", root, cwd) == \
        "config/presets/demo.yaml"
    assert portable_path(cwd / "presets" / "tiny.yaml", root, cwd) == "presets/tiny.yaml"
    assert portable_path("/etc/site/preset.yaml", root, cwd) == "/etc/site/preset.yaml"
    assert portable_path("config/presets/demo.yaml", root, cwd) == "config/presets/demo.yaml"


def test_templates_and_plan_records_hold_no_checkout_path():
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    wcfg = load_workflow_config(cfg, ROOT)
    wf = Workflow(wcfg)
    for name in wf.rounds:
        texts = [json.dumps(plan_records(wcfg, wf.plans[name]), default=str)]
        texts += [json.dumps(wf.run_template(name, run), default=str)
                  for run in wf.run_names(name)]
        for text in texts:
            assert str(ROOT) not in text, name
