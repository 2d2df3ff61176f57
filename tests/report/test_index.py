"""The cross-round page results/report.html (physweep.report.index) on fake round directories:
each round shows exactly its inherit/fixed/swept knobs, its winner's score beside the baselines
and the compute it used and saved; one table gives the final configuration and who decided
each knob; the page fits a 1,300-pixel window (headless Chromium); winners.yaml has no YAML
aliases."""

from __future__ import annotations

import copy
import html as html_mod
import json
import math
import re
from pathlib import Path

import chromium as browser  # tests/chromium.py (tests/ is on the pytest pythonpath)
import pandas as pd
import pytest
import yaml

from physweep.io import write_yaml
from physweep.plan.knobs import format_value, same_value
from physweep.report import build_index

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

DEFAULTS = {"lr": 3e-4, "warmup": 0.05, "ema": 0.9995, "cadence": 16, "steps": 2,
            "guidance": 1.0, "projection_weight": 1.0, "model_dim": 384, "depth": 24}

# the issue's scenario, in the round files' format: round B inherits lr/warmup/ema from A
# (whose winner has cadence 8) and fixes cadence 16 itself; C inherits cadence from B
ROUND_A = {"name": "round_a", "title": "Optimizer", "objective": "nrmse", "fixed": {"ema": 0.9995},
           "blocks": [{"name": "optimizer", "design": {"type": "grid"},
                       "knobs": {"lr": [2e-4, 3e-4, 4.5e-4], "warmup": [0.03, 0.05, 0.06]}},
                      {"name": "cadence", "design": {"type": "grid"},
                       "fixed_from_block": {"block": "optimizer", "knobs": ["lr", "warmup"]},
                       "knobs": {"cadence": [8, 16, 32]}}]}
ROUND_B = {"name": "round_b", "title": "Stability", "objective": "ece",
           "inherit": [{"round": "round_a", "knobs": ["lr", "warmup", "ema"]}],
           "fixed": {"cadence": 16},
           "blocks": [{"name": "corrector", "design": {"type": "grid"},
                       "knobs": {"guidance": [0.5, 1.0, 1.5], "steps": [1, 2]}},
                      {"name": "projection", "design": {"type": "list", "runs": [
                          {"projection_weight": 0.5}, {"projection_weight": 2.0}]}}]}
ROUND_C = {"name": "round_c", "title": "Capacity", "objective": "nrmse_per_joule",
           "inherit": [{"round": "round_b", "knobs": ["lr", "warmup", "ema", "cadence",
                                                      "guidance"]}],
           "blocks": [{"name": "capacity", "design": {"type": "grid"},
                       "knobs": {"model_dim": [320, 448]}}]}


def _winner_knobs(cfg: dict, winners: dict[str, dict], defaults: dict, pick: int = -1) -> dict:
    """The knob values a round's winner has, as the planner builds them: defaults < inherited
    < fixed < the swept levels (level ``pick`` of every swept knob)."""
    knobs = dict(defaults)
    for inh in cfg.get("inherit", []):
        for k in inh["knobs"]:
            knobs[k] = winners[inh["round"]][k]
    knobs.update(cfg.get("fixed") or {})
    for b in cfg["blocks"]:
        if b["design"]["type"] == "list":
            for k in b["design"]["runs"][pick]:
                knobs[k] = b["design"]["runs"][pick][k]
        for k, levels in (b.get("knobs") or {}).items():
            knobs[k] = levels[pick]
    return knobs


def _ranking(path: Path, name: str, score: float, baselines: bool = True) -> None:
    rows = [
        {"run": "baseline", "block": "baseline", "status": "ok", "winner": False,
         "score": score + 0.05, "nrmse": 0.45, "compute_fraction": 1.0, "train_steps": 100},
        {"run": f"{name}_win", "block": "b", "status": "ok", "winner": True, "score": score,
         "full_score": score + 0.02, "nrmse": 0.40, "compute_fraction": 1.0, "train_steps": 100},
        {"run": f"{name}_stop", "block": "b", "status": "early_stopped", "winner": False,
         "score": score + 0.1, "nrmse": 0.5, "compute_fraction": 0.35, "train_steps": 35},
        {"run": f"{name}_div", "block": "b", "status": "diverged", "winner": False,
         "score": math.inf, "nrmse": math.nan, "compute_fraction": 0.2, "train_steps": 20},
    ]
    df = pd.DataFrame(rows)
    if baselines:
        df["nrmse_persistence"] = 0.405
        df["nrmse_reference"] = 0.39
    df.to_csv(path, index=False)


def _fake_results(root: Path, configs: dict[str, dict], defaults: dict, *,
                  unfinished: tuple[str, ...] = (), old_ranking: tuple[str, ...] = ()) -> dict:
    """results/<round>/{report.html,winners.yaml,ranking.csv} for every round in ``configs``
    (in order); winners.yaml written by the workflow's own writer, as rank.py does."""
    reports, winners, rankings, knobs = {}, {}, {}, {}
    for k, (name, cfg) in enumerate(configs.items()):
        d = root / name
        d.mkdir(parents=True)
        reports[name], winners[name], rankings[name] = (d / "report.html", d / "winners.yaml",
                                                        d / "ranking.csv")
        if name in unfinished:
            continue
        reports[name].write_text("<html></html>")
        knobs[name] = _winner_knobs(cfg, knobs, defaults)
        write_yaml(winners[name], {
            "round": name, "objective": cfg["objective"], "winners": [f"{name}_win"],
            "reason": "best promoted run by full-eval objective",
            "best": {"run": f"{name}_win", "knobs": knobs[name]},
            "fixed_for_next": knobs[name],  # the same object, as rank() writes it
            "cost_unit": "s/step" if cfg["objective"] == "nrmse_per_joule" else None})
        _ranking(rankings[name], name, 0.3 + 0.01 * k, baselines=name not in old_ranking)
    return dict(rounds=reports, winners=winners, rankings=rankings, configs=configs,
                defaults=defaults), knobs


def _section(html: str, name: str) -> str:
    m = re.search(rf'<section class="round" id="round-{name}">(.*?)</section>', html, re.S)
    assert m, f"no section for {name}"
    return m.group(1)


def _card(section: str, title: str) -> str:
    m = re.search(rf"<h4>{title}</h4>(.*?)</div>", section, re.S)
    assert m, f"no {title} card"
    return m.group(1)


def _text(fragment: str) -> str:
    return html_mod.unescape(re.sub(r"<[^>]+>", "", fragment))


def _rows(fragment: str) -> list[list[str]]:
    """Table rows as lists of cell texts (tags stripped, entities decoded)."""
    out = []
    for tr in re.findall(r"<tr>(.*?)</tr>", fragment, re.S):
        cells = re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", tr, re.S)
        out.append([_text(c).strip() for c in cells])
    return out


def _body_rows(fragment: str) -> list[list[str]]:
    return _rows(fragment)[1:] if "<thead>" in fragment else _rows(fragment)


def _final(html: str) -> dict[str, list[str]]:
    m = re.search(r'<table class="idx" id="final">(.*?)</table>', html, re.S)
    assert m
    return {r[0]: r for r in _body_rows(m.group(1))}


@pytest.fixture()
def issue_page(tmp_path):
    configs = {"round_a": ROUND_A, "round_b": ROUND_B, "round_c": ROUND_C}
    kw, knobs = _fake_results(tmp_path / "results", configs, DEFAULTS)
    out = build_index(out_html=tmp_path / "results" / "report.html", **kw)
    return out.read_text(), knobs


def test_round_shows_exactly_its_inherit_list(issue_page):
    html, knobs = issue_page
    assert 'href="round_a/report.html"' in html and 'href="round_b/report.html"' in html
    assert knobs["round_a"]["cadence"] == 32 and knobs["round_b"]["cadence"] == 16
    b = _section(html, "round_b")
    inherited = {r[0]: r for r in _body_rows(_card(b, "Inherited"))}
    assert list(inherited) == ["lr", "warmup", "ema"]  # not cadence, not the other 20 knobs
    assert inherited["lr"][1] == "4.5e-4" and inherited["lr"][2].startswith("round_a")
    assert "from the winner of round_a: round_a_win" in _text(_card(b, "Inherited"))
    assert "cadence" not in _card(b, "Inherited")
    fixed = {r[0]: r for r in _body_rows(_card(b, "Fixed"))}
    assert list(fixed) == ["cadence"] and fixed["cadence"][1] == "16"
    swept = {r[0]: r for r in _body_rows(_card(b, "Swept"))}
    assert list(swept) == ["guidance", "steps", "projection_weight"]
    assert swept["guidance"][1] == "0.5, 1.0, 1.5" and swept["guidance"][3] == "1.5"
    assert swept["projection_weight"][1] == "0.5, 2.0"  # a list design's levels
    a = _section(html, "round_a")
    assert "nothing (first round)" in _card(a, "Inherited")
    assert [r[0] for r in _body_rows(_card(a, "Swept"))] == ["lr", "warmup", "cadence"]
    assert "best <code>lr</code>, <code>warmup</code> of block optimizer" in a
    c = _section(html, "round_c")
    c_inh = {r[0]: r for r in _body_rows(_card(c, "Inherited"))}
    assert list(c_inh) == ["lr", "warmup", "ema", "cadence", "guidance"]
    assert c_inh["cadence"][1] == "16" and c_inh["cadence"][2].startswith("round_b")
    assert "nothing" in _card(c, "Fixed")
    for name in ("round_a", "round_b", "round_c"):  # one table per card, no knob repeated
        sec = _section(html, name)
        assert sec.count("<table") <= 3 and sec.count("depth") == 0


def test_final_configuration_and_who_decided_it(issue_page):
    html, knobs = issue_page
    final = _final(html.split("Configuration after the last round")[1])
    assert list(final)[:len(DEFAULTS)] == list(DEFAULTS)
    assert final["lr"][1:] == ["4.5e-4", "round_a (swept)"]
    assert final["cadence"][1:] == ["16", "round_b (fixed)"]  # not round_a's 32
    assert final["ema"][1:] == ["0.9995", "round_a (fixed)"]
    assert final["guidance"][1:] == ["1.5", "round_b (swept)"]
    assert final["model_dim"][1:] == ["448", "round_c (swept)"]
    # swept by round_b but not inherited by round_c: the last winner runs the default
    assert final["steps"][1:] == ["2", "default"]
    assert final["projection_weight"][1:] == ["1.0", "default"]
    assert final["depth"][1:] == ["24", "default"]
    assert "(round_c)" in html.split("Configuration after the last round")[1][:20]


def test_summary_scores_baselines_and_compute(tmp_path):
    configs = {"round_a": ROUND_A, "round_b": ROUND_B}
    kw, _ = _fake_results(tmp_path, configs, DEFAULTS, old_ranking=("round_a",))
    html = build_index(out_html=tmp_path / "report.html", **kw).read_text()
    m = re.search(r'<table class="idx" id="rounds">(.*?)</table>', html, re.S)
    head, *rows = _rows(m.group(1))
    assert head == ["round", "objective", "winner", "score", "full-eval score", "nRMSE",
                    "persistence nRMSE", "reference nRMSE", "training compute used",
                    "saved by early stopping"]
    rows = {r[0]: dict(zip(head, r, strict=True)) for r in rows}
    b = rows["round_b"]
    assert (b["objective"], b["winner"], b["score"]) == ("ece", "round_b_win", "0.31")
    assert b["full-eval score"] == "0.33"
    assert (b["nRMSE"], b["persistence nRMSE"], b["reference nRMSE"]) == ("0.4", "0.405", "0.39")
    # older ranking.csv without the baseline columns
    assert rows["round_a"]["persistence nRMSE"] == "—" == rows["round_a"]["reference nRMSE"]
    assert rows["round_a"]["score"] == "0.3"
    # no plan.json: one training per run (footnoted): 1 + 1 + 0.35 + 0.2 of 4 training
    # budgets; the early-stopped run's training saved 0.65 (35 of 100 steps)
    assert b["training compute used"] == "2.55 of 4 training budgets (64%), 255 steps*"
    assert b["saved by early stopping"] == \
        "0.65 training budgets (16%) on 1 training stopped at the probe, 65 steps"
    assert "<sup>*</sup> round_a, round_b: plan.json records no trainings" in html


# runs of a round on shared trainings (plan.json "training"), with the decisions beside them
SHARED = [  # run, status, compute fraction, training, decision.json's decision (None: none)
    ("baseline", "ok", 1.0, "t-base", None),
    ("win", "ok", 1.0, "t-win", None),
    ("shared", "early_stopped", 0.35, "t-win", None),  # its training continued for "win"
    ("stop_a", "early_stopped", 0.35, "t-stop", None),  # two stopped runs, one training
    ("stop_b", "early_stopped", 0.35, "t-stop", None),
    ("div", "diverged", 0.2, "t-div", None),
    # diverged after it continued at the probe (decision.json: continue), its training
    # shared with a stopped run: that training was not stopped
    ("late_div", "diverged", 0.8, "t-late", "continue"),
    ("stop_c", "early_stopped", 0.35, "t-late", "stop"),
]


def _shared_round(d: Path) -> None:
    pd.DataFrame([{"run": r, "block": "b", "status": st, "winner": r == "win", "score": 0.3,
                   "nrmse": 0.4, "compute_fraction": f, "train_steps": round(100 * f)}
                  for r, st, f, _, _ in SHARED]).to_csv(d / "ranking.csv", index=False)
    (d / "plan.json").write_text(json.dumps(
        {"round": d.name, "runs": [{"run": r, "training": t} for r, _, _, t, _ in SHARED]}))
    for r, _, _, _, dec in SHARED:
        if dec:
            (d / "runs" / r).mkdir(parents=True)
            (d / "runs" / r / "decision.json").write_text(json.dumps(
                {"run": r, "decision": dec, "probe_fraction": 0.35}))


def _compute_cells(html: str, name: str) -> tuple[str, str]:
    rows = _rows(re.search(r'id="rounds">(.*?)</table>', html, re.S).group(1))
    return next(tuple(r[-2:]) for r in rows if r[0] == name)


def test_compute_is_counted_per_training(tmp_path):
    configs = {"round_a": ROUND_A, "round_b": ROUND_B}
    kw, _ = _fake_results(tmp_path, configs, DEFAULTS)
    _shared_round(tmp_path / "round_a")
    html = build_index(out_html=tmp_path / "report.html", **kw).read_text()
    used, saved = _compute_cells(html, "round_a")
    # 5 trainings: t-base 1 + t-win 1 + t-stop 0.35 + t-div 0.2 + t-late 0.8 = 3.35 used;
    # only t-stop (both its runs stopped) saved, once: 0.65. Per run it would be 4.4 of 8
    # run budgets used and 4 x 0.65 = 2.6 saved.
    assert used == "3.35 of 5 training budgets (67%), 335 steps"
    assert saved == "0.65 training budgets (13%) on 1 training stopped at the probe, 65 steps"
    # round_b has no plan.json: one training per run, said in the footnote only
    assert _compute_cells(html, "round_b")[0].endswith("*")
    assert "<sup>*</sup> round_b: plan.json records no trainings" in html
    # t-base copied from an identical training (identity.json reused_from): not trained
    for stage in ("probe", "final"):
        sd = tmp_path / "round_a" / "trainings" / "t-base" / stage
        sd.mkdir(parents=True)
        (sd / "identity.json").write_text(json.dumps(
            {"identity": "x", "reused_from": f"results/round_0/trainings/t-base/{stage}"}))
    html = build_index(out_html=tmp_path / "report.html", **kw).read_text()
    assert _compute_cells(html, "round_a")[0] == \
        "2.35 of 5 training budgets (47%), 235 steps; 1 copied from identical trainings, " \
        "counted 0"


def test_ranking_without_compute_columns_leaves_compute_out(tmp_path):
    kw, _ = _fake_results(tmp_path, {"round_a": ROUND_A}, DEFAULTS)
    pd.read_csv(kw["rankings"]["round_a"]).drop(
        columns=["compute_fraction", "train_steps"]).to_csv(kw["rankings"]["round_a"], index=False)
    html = build_index(out_html=tmp_path / "report.html", **kw).read_text()
    row = _rows(re.search(r'id="rounds">(.*?)</table>', html, re.S).group(1))[1]
    assert row[-2:] == ["—", "—"]


def test_unfinished_round_and_missing_inputs(tmp_path):
    configs = {"round_a": ROUND_A, "round_b": ROUND_B, "round_c": ROUND_C}
    kw, _ = _fake_results(tmp_path, configs, DEFAULTS, unfinished=("round_b", "round_c"))
    html = build_index(out_html=tmp_path / "report.html", **kw).read_text()
    assert "round_b</a> (not built)" in html
    c_inh = {r[0]: r for r in _body_rows(_card(_section(html, "round_c"), "Inherited"))}
    assert "pending (round_b has no winner yet)" in c_inh["lr"][1]
    final = _final(html)
    assert final["model_dim"][1:] == ["pending (round_c has no winner yet)", "round_c (swept)"]
    assert final["cadence"][1:] == ["16", "round_b (fixed)"]  # known from the round file
    assert final["depth"][1:] == ["24", "default"]
    # no round files, no rankings (the old call): still a page, saying what it cannot know
    old = build_index(kw["rounds"], kw["winners"], tmp_path / "old.html").read_text()
    assert "round file not available" in old and "round_a_win" in _text(old)


def test_overridden_and_stale_inherited_values_are_flagged(tmp_path):
    b = copy.deepcopy(ROUND_B)
    b["fixed"] = {"cadence": 16, "ema": 0.999}  # inherits ema and fixes it too
    kw, knobs = _fake_results(tmp_path, {"round_a": ROUND_A, "round_b": b}, DEFAULTS)
    win_b = yaml.safe_load(kw["winners"]["round_b"].read_text())
    win_b["fixed_for_next"]["lr"] = 2e-4  # round_b ran with an older round_a winner
    kw["winners"]["round_b"].write_text(yaml.safe_dump(win_b))
    html = build_index(out_html=tmp_path / "report.html", **kw).read_text()
    inh = {r[0]: r for r in _body_rows(_card(_section(html, "round_b"), "Inherited"))}
    assert "overridden: fixed 0.999 here" in inh["ema"][3]
    assert "this round's winner ran with 2e-4" in inh["lr"][3]
    assert _final(html)["ema"][1:] == ["0.999", "round_b (fixed)"]


def test_real_round_files(tmp_path, wcfg):
    """The repository's rounds, as the index rule passes them: every round's Inherited card
    lists exactly its inherit list and its Fixed card exactly its fixed values."""
    configs = {n: wcfg.rounds[n] for n in wcfg.rounds}
    defaults = wcfg.config["knobs"]
    kw, knobs = _fake_results(tmp_path, configs, defaults)
    html = build_index(out_html=tmp_path / "report.html", **kw).read_text()
    for name, cfg in configs.items():
        sec = _section(html, name)
        want = [k for inh in cfg.get("inherit", []) for k in inh["knobs"]]
        got = [r[0] for r in _body_rows(_card(sec, "Inherited"))] if want else []
        assert got == want, name
        for inh in cfg.get("inherit", []):
            for row in _body_rows(_card(sec, "Inherited")):
                if row[0] in inh["knobs"]:
                    assert row[1] == format_value(knobs[inh["round"]][row[0]])
        fixed = {r[0]: r[1] for r in _body_rows(_card(sec, "Fixed"))} if cfg.get("fixed") else {}
        assert fixed == {k: format_value(v) for k, v in (cfg.get("fixed") or {}).items()}
    final = _final(html)
    last = list(configs)[-1]
    assert set(final) == set(defaults)
    for k, row in final.items():
        assert same_value(yaml.safe_load(row[1]), knobs[last][k]) or row[1] == format_value(
            knobs[last][k]), k
    assert final["cadence"][2] == "round_b (fixed)"
    assert final["max_horizon"][2] == "round_d (swept)"
    assert final["model_dim"][2] == "round_c (swept)"


def test_winners_yaml_has_no_aliases(tmp_path):
    knobs = {"lr": 2e-4, "warmup": [0.03, 0.05]}
    data = {"winners": ["w"], "best": {"run": "w", "knobs": knobs}, "fixed_for_next": knobs}
    assert "&id" in yaml.safe_dump(data)  # what the plain dump did
    write_yaml(tmp_path / "winners.yaml", data)
    text = (tmp_path / "winners.yaml").read_text()
    assert "&id" not in text and "*id" not in text
    assert yaml.safe_load(text) == data
    assert text.index("winners") < text.index("best") < text.index("fixed_for_next")  # order kept


# ---- the page in a real browser ------------------------------------------------------------



@pytest.mark.slow
@pytest.mark.browser
def test_index_fits_1300_pixels_in_headless_chromium(tmp_path, wcfg):
    path, why = browser.ensure_chromium()
    if not path:
        pytest.skip(f"headless Chromium unavailable: {why}")
    configs = {n: wcfg.rounds[n] for n in wcfg.rounds}
    kw, _ = _fake_results(tmp_path / "results", configs, wcfg.config["knobs"])
    # long run names, as the real rounds have
    for p in kw["winners"].values():
        data = yaml.safe_load(p.read_text())
        data["winners"] = ["freeze_bottom_layers_on_expand~true_max_horizon~48_sampler_temp~0.8"]
        write_yaml(p, data)
    page = build_index(out_html=tmp_path / "results" / "report.html", **kw)
    h = browser
    res = h.page_width(path, page, width=1300)
    assert res["innerWidth"] == 1300, res
    assert res["scrollWidth"] <= res["innerWidth"], res
    narrow = h.page_width(path, page, width=900)  # not only at exactly 1,300
    assert narrow["scrollWidth"] <= narrow["innerWidth"], narrow
    out = h.screenshot(path, page, ARTIFACTS / "index_1300.png", size=(1300, 2600))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
