import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from physweep.report import FIGURE_NAMES, build_round_report
from physweep.report.figures import pareto_front

RUNS = ["base_s0", "base_s1", "lr~2e-4", "lr~4.5e-4", "warmup~0.06", "ema~0.9999"]
PACKAGES = json.dumps({"torch": "2.13.0", "numpy": "2.1.0"})


def _ranking(energy: bool) -> pd.DataFrame:
    nan = math.nan
    rows = [
        # run, block, seed, status, promoted, winner, rank, score, lr, nrmse
        ("base_s0", "baseline", 0, "ok", False, False, 3, 0.30, 3e-4, 0.30),
        ("base_s1", "baseline", 1, "ok", False, False, 4, 0.31, 3e-4, 0.31),
        ("lr~2e-4", "optimizer", 0, "ok", True, True, 1, 0.20, 2e-4, 0.20),
        ("lr~4.5e-4", "optimizer", 0, "ok", True, False, 2, 0.25, 4.5e-4, 0.25),
        ("warmup~0.06", "optimizer", 0, "early_stopped", False, False, nan, nan, 3e-4, 0.40),
        ("ema~0.9999", "optimizer", 0, "diverged", False, False, nan, nan, 3e-4, nan),
    ]
    out = []
    for k, (run, block, seed, status, prom, win, rank, score, lr, err) in enumerate(rows):
        diverged = status == "diverged"
        out.append({
            "run": run, "block": block, "seed": seed, "status": status, "promoted": prom,
            "winner": win, "rank": rank, "objective": "nrmse", "score": score,
            "knob.lr": lr, "knob.warmup": 0.06 if run == "warmup~0.06" else 0.05,
            "nrmse": err, "nrmse_long": err * 2, "nrmse_ood": err * 3,
            "ece": nan if diverged else 0.05 + 0.01 * k, "crps": nan if diverged else 0.1,
            "spread_skill": nan if diverged else 0.9,
            "s_per_step": nan if diverged else 0.05 + 0.01 * k,
            "j_per_step": (nan if diverged else 10.0 + k) if energy else nan,
            "gates_pass": None if diverged else run != "lr~4.5e-4",
            "gate.divergence": nan if diverged else 0.01 * (k + 1),
            "gate.divergence.pass": None if diverged else True,
            "gate.mass_flux": nan if diverged else (0.5 if run == "lr~4.5e-4" else 0.001),
            "gate.mass_flux.pass": None if diverged else run != "lr~4.5e-4",
            "train_steps": 40 if status in ("early_stopped", "diverged") else 100,
            "compute_fraction": 0.4 if status in ("early_stopped", "diverged") else 1.0,
            "full_rank": 1 if win and prom else (2 if prom else pd.NA),
            "full_score": err * 1.1 if prom else nan, "full_nrmse": err * 1.1 if prom else nan,
            "full_gates_pass": (run != "lr~4.5e-4") if prom else pd.NA,
        })
    return pd.DataFrame(out)


def _train_log(path, run, status, seed):
    rng = np.random.default_rng(seed)
    n = 40 if status != "ok" else 100
    step = np.arange(n) * 1.0
    loss = np.exp(-step / 50) + 0.02 * rng.random(n)
    if status == "diverged":
        loss[30:] = np.nan
    ds = xr.Dataset(
        {
            "loss": ("step", loss),
            "lr": ("step", np.full(n, 3e-4)),
            "energy_j": ("step", np.full(n, np.nan)),
            "sampler_prob": (("step", "regime"), np.full((n, 2), 0.5)),
        },
        coords={"step": step, "regime": ["laminar", "shedding"]},
        attrs={"run": run, "status": status, "diverged_step": 30 if status == "diverged" else -1,
               "steps_total": 100, "energy_source": "none", "code_version": "abc123",
               "physweep_version": "0.1.0", "packages": PACKAGES},
    )
    ds.to_netcdf(path)


def _eval(path, err, seed):
    rng = np.random.default_rng(seed)
    lead = np.arange(1, 9)
    vals = (err if np.isfinite(err) else np.nan) * (1 + 0.1 * lead)[None] * (
        1 + 0.05 * rng.random((6, 8)))
    ds = xr.Dataset(
        {"nrmse": (("traj", "lead"), vals), "vrmse": (("traj", "lead"), vals)},
        coords={"lead": lead, "split": ("traj", ["test"] * 4 + ["ood"] * 2)},
        attrs={"nrmse": float(err), "code_version": "abc123", "packages": PACKAGES},
    )
    ds.to_netcdf(path)


def _inputs(tmp_path, energy=False):
    df = _ranking(energy)
    csv = tmp_path / "ranking.csv"
    df.to_csv(csv, index=False)
    decisions, logs, evals = {}, {}, {}
    for k, row in df.iterrows():
        run = row["run"]
        d = tmp_path / "runs" / run
        d.mkdir(parents=True)
        decision = {"baseline": "baseline", "ok": "continue", "early_stopped": "stop",
                    "diverged": "diverged"}["baseline" if row["block"] == "baseline"
                                            else row["status"]]
        dec = {"run": run, "decision": decision, "improvement": 0.01 * k, "sigma": 0.01,
               "sigma_factor": 1.0, "sigma_method": "seeds", "baseline_mean": 0.305,
               "run_score": row["nrmse"], "probe_fraction": 0.4,
               "saved_fraction": 0.6 if decision in ("stop", "diverged") else 0.0}
        (d / "decision.json").write_text(json.dumps(dec))
        decisions[run] = d / "decision.json"
        _train_log(d / "train_log.nc", run, row["status"], k)
        logs[run] = d / "train_log.nc"
        _eval(d / "small_eval.nc", row["nrmse"], k)
        evals[run] = d / "small_eval.nc"
    winners = tmp_path / "winners.yaml"
    winners.write_text(yaml.safe_dump({"round": "round_a", "objective": "nrmse",
                                       "winners": ["lr~2e-4"],
                                       "fixed_for_next": {"lr": 2e-4, "warmup": 0.05}}))
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({
        "round": "round_a", "preset": "demo",
        "runs": [{"run": r, "block": "optimizer", "seed": 0, "nominal": {"lr": 3e-4},
                  "effective": {"lr": 1.5e-4}, "lr_scaled": True, "fixed_from": {},
                  # warmup~0.06 (stopped at the probe) shares lr~4.5e-4's training (continued)
                  "training": "t-lr~4.5e-4" if r == "warmup~0.06" else f"t-{r}"}
                 for r in RUNS],
        "warnings": ["batch_tokens differs from the playbook: lr scaled by 0.5"],
    }))
    return dict(round_name="round_a", ranking_csv=csv, decisions=decisions, train_logs=logs,
                eval_files=evals, winners_yaml=winners, plan_json=plan)


def _table(html: str, table_id: str) -> str:
    m = re.search(rf'<table id="{table_id}".*?</table>', html, re.S)
    assert m, f"no table {table_id}"
    return m.group(0)


@pytest.mark.parametrize("energy", [False, True])
def test_round_report(tmp_path, energy):
    inputs = _inputs(tmp_path, energy)
    out = tmp_path / "report" / "round_a.html"
    figs = tmp_path / "figs"
    assert build_round_report(**inputs, out_html=out, figures_dir=figs) == out
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>")
    # every run is a row of the ranking table
    ranking = _table(html, "ranking")
    body = ranking.split("<tbody>")[1]
    assert body.count("<tr") == len(RUNS)
    for run in RUNS:
        assert run in ranking
    assert 'class="sortable"' in ranking and "addEventListener('click'" in html
    # figures inline, also written out
    assert html.count('<img src="data:image/png;base64,') == len(FIGURE_NAMES)
    for name in FIGURE_NAMES.values():
        assert (figs / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # self-contained: nothing loaded from the network
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', html)
    assert "http://" not in html and "https://" not in html
    # NaN shown as "not measured" (the diverged run's metrics, missing energy)
    div_row = next(r for r in body.split("</tr>") if "ema~0.9999" in r)
    assert "not measured" in div_row and "nan" not in div_row.lower().replace("data-v", "")
    # summary content
    assert "lr~2e-4" in html.split("<h2>Ranking</h2>")[0]  # winner in the summary
    assert "lr = 0.0002" in html  # fixed for next round
    assert "warmup~0.06" in html.split("<h2>Ranking</h2>")[0]  # early-stopped listed
    # warmup~0.06 stopped on a training that continued for lr~4.5e-4: it saved nothing
    assert "saving 0% of the round's training compute (0 of 5 budget units" in html
    assert "stopped on a training that continued for another run: nothing saved" in html
    assert "mass_flux" in html.split("<h2>Ranking</h2>")[0]  # failing gate named
    assert "batch_tokens differs" in html  # guardrail warning
    assert ("time per step (s/step)" in html) is (not energy)
    # runs on one training spent it once: 1 + 1 + 1 + 1 + 0.4 (diverged) units, not + 0.4 more
    assert "Shared trainings:</b> 6 runs on 5 trainings" in html
    assert "spent 4.4 budget units, 0.4 saved by sharing (4.8 with one training per run)" in html
    # the default hint retrains the run's training (plan.json names it)
    assert "snakemake --cores 2 round_a --forcerun " \
           "results/round_a/trainings/t-lr~2e-4/probe/checkpoint.pt" in html
    assert "abc123" in html and "2.13.0" in html and "demo" in html
    assert "Input problems" not in html


def test_round_report_tolerates_missing_inputs(tmp_path):
    inputs = _inputs(tmp_path)
    inputs["train_logs"] = dict(inputs["train_logs"])
    inputs["train_logs"]["base_s0"] = tmp_path / "absent.nc"
    del inputs["eval_files"]["lr~2e-4"]
    inputs["decisions"] = {}
    out = build_round_report(**inputs, out_html=tmp_path / "r.html",
                             rerun_hint="make {run} ROUND={round}")
    html = out.read_text()
    assert "Input problems" in html and "absent.nc" in html
    assert html.count('<img src="data:image/png;base64,') == len(FIGURE_NAMES)
    assert "make lr~2e-4 ROUND=round_a" in html


def test_pareto_front():
    x = [1.0, 2.0, 3.0, 1.5, math.nan, 4.0]
    y = [0.5, 0.3, 0.35, 0.6, 0.1, 0.2]
    assert pareto_front(x, y) == [0, 1, 5]


def test_round_report_minimal_inputs(tmp_path):
    csv = tmp_path / "ranking.csv"
    csv.write_text("run,status,nrmse\nr0,ok,0.5\nr1,failed,\n")
    out = build_round_report("round_x", csv, {}, {}, {}, tmp_path / "no_winners.yaml",
                             tmp_path / "no_plan.json", tmp_path / "r.html")
    html = out.read_text()
    body = _table(html, "ranking").split("<tbody>")[1]
    assert body.count("<tr") == 2 and "not measured" in body
    assert html.count('<img src="data:image/png;base64,') == len(FIGURE_NAMES)
    assert "Input problems" in html and "no_plan.json" in html


# ----------------------------------------------------------------------------- issue: round
# reports people want to read (reliability, effects, summary wording, provenance, tables)


def test_round_report_sections_on_synthetic_round(tmp_path):
    from synthetic_round import make_round

    inputs = make_round(tmp_path / "round", n_runs=30)
    ranking = pd.read_csv(inputs["ranking_csv"])
    winner = ranking.loc[ranking["winner"], "run"].iloc[0]
    promoted = list(ranking.loc[ranking["promoted"], "run"])
    out = build_round_report(**inputs, out_html=tmp_path / "r.html", figures_dir=tmp_path / "f",
                             tables_dir=tmp_path / "t",
                             rerun_hint="snakemake --cores 2 {round} --forcerun "
                                        "results/{round}/runs/{run}/probe/checkpoint.pt")
    html = out.read_text()
    summary = html.split("<h2>Ranking</h2>")[0]
    # summary wording: objective, winner + what the next round fixes, compute saved in GPU-hours
    assert "Objective:</b> nrmse (lowest" in summary
    assert winner in summary and "lr = " in summary and "ema = " in summary
    assert re.search(r"Early-stopped:</b> \d+ run\(s\), saving [\d.]+% of the round's training "
                     r"compute \([\d.]+ of \d+ budget units.*\), ≈ [\d.e-]+ GPU-hours", summary)
    for run in promoted:
        assert run in summary
    div = ranking.loc[ranking["status"] == "diverged", "run"].iloc[0]
    assert div in summary.split("Diverged:")[1].split("</li>")[0]
    assert promoted[1] in summary.split("Failing physics gates:")[1]
    # reliability of the promoted runs and the effects figures
    for name in ("reliability", "main_effects", "interactions"):
        assert (tmp_path / "f" / FIGURE_NAMES[name]).stat().st_size > 5_000
    assert "Reliability diagram" in html
    effects = html.split("<h2>Effects of the swept knobs</h2>")[1].split("<h2>")[0]
    assert "at the probe point" in effects and "lower is better" in effects
    assert "lr × ema" in effects and "LR x EMA" in effects  # the known interaction is tested
    assert "window_size x model_dim" in effects  # not swept: said so, not plotted
    # provenance: hardware, per-run resolved config and rerun command
    assert "1x NVIDIA H100 80GB HBM3" in html and "demo" in html
    runs_table = _table(html, "runs")
    assert runs_table.split("<tbody>")[1].count("<tr>") == len(ranking)
    assert "&quot;nominal&quot;" in runs_table  # the run_spec JSON
    for run in ranking["run"]:
        assert f"results/round_s/runs/{run}/probe/checkpoint.pt" in runs_table
    # standalone tables for Snakemake's report
    assert 'id="ranking"' in (tmp_path / "t" / "ranking.html").read_text()
    assert "F tests" in (tmp_path / "t" / "effects.html").read_text()


def test_effects_response_is_the_probe_score(tmp_path):
    from physweep.report.model import load_round
    from physweep.report.round import effects_response

    csv = tmp_path / "ranking.csv"
    pd.DataFrame({"run": ["a", "b", "c", "d"], "score": [0.9, 0.8, math.inf, 0.7],
                  "status": ["ok", "ok", "diverged", "ok"]}).to_csv(csv, index=False)
    decisions = {}
    for run, dec in {"a": {"run_score": 0.5}, "b": {"run_score": 0.6},
                     "c": {"decision": "diverged"}}.items():
        decisions[run] = tmp_path / f"{run}.json"
        decisions[run].write_text(json.dumps(dec))
    res = load_round("r", csv, decisions, {}, {}, None, None)
    vals, src = effects_response(res)
    assert list(vals[:2]) == [0.5, 0.6] and math.isnan(vals[2]) and vals[3] == 0.7
    assert src == "mixed"


# ----------------------------------------------------------------------------- issue 11:
# baselines (persistence, linear extrapolation, reference model) and per-regime accuracy


def test_ranking_shows_baselines_skill_and_regimes(tmp_path):
    from synthetic_round import make_round

    inputs = make_round(tmp_path / "round", n_runs=12)
    ranking = pd.read_csv(inputs["ranking_csv"])
    out = build_round_report(**inputs, out_html=tmp_path / "r.html", tables_dir=tmp_path / "t",
                             figures_dir=tmp_path / "f")
    html = out.read_text()
    table = _table(html, "ranking")
    headers = re.findall(r"<th>(.*?)</th>", table.split("</thead>")[0])
    i = headers.index("score")
    assert headers[i:i + 5] == ["score", "nRMSE", "persistence nRMSE", "reference nRMSE",
                                "skill vs persistence"]
    win = ranking.loc[ranking["winner"]].iloc[0]
    row = next(r for r in table.split("</tr>") if f"★ ▲ {win['run']}" in r)
    cells = re.findall(r'<td data-v="([^"]*)"', row)
    assert float(cells[i + 2]) == pytest.approx(win["nrmse_persistence"])
    assert float(cells[i + 4]) == pytest.approx(1 - win["nrmse"] / win["nrmse_persistence"])
    # per-regime table of the best runs (winner and promoted), with the baselines
    regimes = html.split("<h2>Accuracy by regime</h2>")[1].split("<h2>")[0]
    for run in ranking.loc[ranking["promoted"], "run"]:
        assert run in regimes
    for label in ("periodic", "irregular", "all regimes", "persistence", "linear extrapolation",
                  "reference model", "nRMSE u", "nRMSE p"):
        assert label in regimes
    assert "irregular" in (tmp_path / "t" / "regimes.html").read_text()


def test_ranking_without_reference_hides_its_column(tmp_path):
    inputs = _inputs(tmp_path)  # eval files of the earlier format: no samples, no baselines
    df = pd.read_csv(inputs["ranking_csv"])
    df["nrmse_persistence"] = 0.5
    df["nrmse_reference"] = math.nan
    df.to_csv(inputs["ranking_csv"], index=False)
    html = build_round_report(**inputs, out_html=tmp_path / "r.html").read_text()
    headers = re.findall(r"<th>(.*?)</th>", _table(html, "ranking").split("</thead>")[0])
    assert "persistence nRMSE" in headers and "reference nRMSE" not in headers
    assert "skill vs persistence" in headers  # computed from nRMSE and persistence
    regimes = html.split("<h2>Accuracy by regime</h2>")[1].split("<h2>")[0]
    assert "no <code>regime</code> coordinate" in regimes


def test_lead_series_panels_carry_their_baselines(tmp_path):
    from synthetic_round import make_round

    from physweep.report.evaldata import lead_series as _lead_series

    inputs = make_round(tmp_path / "round", n_runs=12)
    evals = {r: xr.load_dataset(p) for r, p in inputs["eval_files"].items()}
    series, base = _lead_series(evals)
    assert list(series) == ["small eval, test", "small eval, ood", "full eval, test",
                            "full eval, ood"]
    for panel in series:
        assert set(base[panel]) == {"persistence", "linear", "reference"}
    small = next(ds for ds in evals.values() if ds.attrs["suite"] == "small")
    lead, pers = base["small eval, test"]["persistence"]
    assert np.allclose(pers, small["nrmse_persistence"].values[:4].mean(axis=0))
    # one suite only: panels are the splits, as before
    only = {r: ds for r, ds in evals.items() if ds.attrs["suite"] == "small"}
    assert list(_lead_series(only)[0]) == ["test", "ood"]


def test_error_vs_lead_figure_draws_baselines_and_survives_bad_values():
    from physweep.report.figures import error_vs_lead_figure

    lead = np.arange(1.0, 9.0)
    series = {"test": {"a": (lead, 0.3 + 0.01 * lead), "b": (lead, np.full(8, np.nan))}}
    base = {"test": {"persistence": (lead, 0.4 + 0.0 * lead), "linear": (lead, 0.1 * lead ** 3),
                     "reference": (lead, np.full(8, np.nan))}}
    png = error_vs_lead_figure(series, baselines=base)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    zero = {"test": {"persistence": (lead, np.zeros(8)), "linear": (lead, np.inf * lead)}}
    assert error_vs_lead_figure(series, baselines=zero)[:4] == b"\x89PNG"


# ----------------------------------------------------------------------------- issue 12:
# what early stopping saved (per training), exhaustive rounds, reused trainings


def _section(html: str) -> str:
    return html.split('<h2 id="early-stopping-saved">What early stopping saved</h2>')[1] \
        .split("<h2>")[0]


def _rows(table: str) -> dict[str, str]:
    """Rows of a report table by their first cell's text."""
    body = table.split("<tbody>")[1]
    return {re.sub(r"<[^>]+>", "", r.split("</td>")[0]).strip(): r
            for r in body.split("</tr>") if "<td" in r}


def _add_stopped(inputs, tmp_path, run, training, score=0.42):
    """A run early-stopped at the probe (40% of the budget) on ``training``."""
    csv = inputs["ranking_csv"]
    df = pd.read_csv(csv)
    row = df[df["run"] == "warmup~0.06"].iloc[0].copy()
    row["run"], row["nrmse"] = run, score
    pd.concat([df, row.to_frame().T], ignore_index=True).to_csv(csv, index=False)
    d = tmp_path / "runs" / run
    d.mkdir(parents=True)
    (d / "decision.json").write_text(json.dumps({
        "run": run, "decision": "stop", "rule_decision": "stop", "early_stop_enabled": True,
        "improvement": 0.305 - score, "sigma": 0.01, "sigma_factor": 1.0,
        "sigma_method": "seeds", "baseline_mean": 0.305, "run_score": score,
        "probe_fraction": 0.4, "saved_fraction": 0.6}))
    inputs["decisions"][run] = d / "decision.json"
    plan = json.loads(inputs["plan_json"].read_text())
    plan["runs"].append({**plan["runs"][0], "run": run, "training": training})
    inputs["plan_json"].write_text(json.dumps(plan))


def test_early_stopping_saved_is_counted_per_training(tmp_path):
    inputs = _inputs(tmp_path)  # warmup~0.06: stopped, its training continued (lr~4.5e-4)
    _add_stopped(inputs, tmp_path, "batch~64", "t-batch~64")  # alone on its training
    _add_stopped(inputs, tmp_path, "depth~2", "t-depth")  # two stopped runs on one training
    _add_stopped(inputs, tmp_path, "depth~2_b", "t-depth")
    html = build_round_report(**inputs, out_html=tmp_path / "r.html").read_text()
    # 7 trainings; saved: t-batch~64 0.6 + t-depth 0.6 (once) + t-lr~4.5e-4 0 = 1.2 units
    # (per run it would be 4 x 0.6 = 2.4)
    summary = html.split("<h2>Ranking</h2>")[0]
    assert "Early-stopped:</b> 4 run(s), saving 17.1% of the round's training compute " \
           "(1.2 of 7 budget units" in summary
    # used, per training too: 4 x 1 + 0.4 (diverged) + 0.4 (t-batch~64) + 0.4 (t-depth, once)
    # = 5.2 of 7 units, not the runs' mean compute fraction (6 of 9 runs = 67%)
    assert "Training compute used:</b> 5.2 of 7 budget units (74.3% of the exhaustive " \
           "budget" in summary
    section = _section(html)
    assert "Training compute spent 5.2 of 7 budget units (74.3% of the exhaustive budget" in section
    assert "early stopping saved 1.2 budget units (17.1% of the exhaustive budget) on 2 of 7 " \
           "trainings" in section
    trainings = _rows(_table(section, "stopping-trainings"))
    assert set(trainings) == {"t-lr~4.5e-4", "t-batch~64", "t-depth"}
    cells = {t: re.findall(r'<td data-v="([^"]*)"', r) for t, r in trainings.items()}
    assert [float(cells[t][4]) for t in ("t-lr~4.5e-4", "t-batch~64", "t-depth")] == \
        pytest.approx([0.0, 0.6, 0.6])
    assert "continued for another run: nothing saved" in trainings["t-lr~4.5e-4"]
    # the stopped runs against the baseline band, improvement in sigma units
    assert "baseline mean 0.305" in section and "σ = 0.01 (seeds" in section
    assert "mean − 1·σ = 0.295" in section
    stopped = _rows(_table(section, "stopped-runs"))
    assert set(stopped) == {"warmup~0.06", "batch~64", "depth~2", "depth~2_b"}
    batch = re.findall(r'<td data-v="([^"]*)"', stopped["batch~64"])
    assert float(batch[3]) == pytest.approx(0.42)
    assert float(batch[5]) == pytest.approx((0.305 - 0.42) / 0.01)
    assert "continued, nothing saved" in stopped["warmup~0.06"]
    assert "stopped too" in stopped["depth~2"]


def _exhaustive(inputs, would_stop):
    """Rewrite the round as exhaustive: every decision taken with early stopping off, the
    rule's decision "stop" for ``would_stop``; every run trained to the end."""
    df = pd.read_csv(inputs["ranking_csv"])
    df.loc[df["status"] == "early_stopped", ["status", "compute_fraction", "train_steps"]] = \
        ["ok", 1.0, 100]
    df.to_csv(inputs["ranking_csv"], index=False)
    for run, path in inputs["decisions"].items():
        dec = json.loads(path.read_text())
        if dec["decision"] == "stop":
            dec["decision"] = "continue"
        dec["rule_decision"] = "stop" if run in would_stop else dec["decision"]
        dec["early_stop_enabled"] = False
        dec["saved_fraction"] = 0.6 if dec["decision"] == "diverged" else 0.0
        path.write_text(json.dumps(dec))


def test_exhaustive_round_says_what_the_rule_would_have_stopped(tmp_path):
    inputs = _inputs(tmp_path)
    _exhaustive(inputs, {"warmup~0.06", "lr~2e-4"})
    html = build_round_report(**inputs, out_html=tmp_path / "r.html").read_text()
    summary = html.split("<h2>Ranking</h2>")[0]
    assert "Early-stopped:</b> none — early stopping was off" in summary
    section = _section(html)
    assert "Early stopping was off in this round" in section
    # lr~2e-4 alone on its training: 0.6 saved; warmup~0.06's training continued (lr~4.5e-4)
    assert "would have stopped 2 run(s): lr~2e-4, warmup~0.06, saving 0.6 budget units " \
           "(12% of the exhaustive budget) on 1 of 5 trainings" in section
    stopped = _rows(_table(section, "stopped-runs"))
    assert set(stopped) == {"lr~2e-4", "warmup~0.06"}
    win = re.findall(r'<td data-v="([^"]*)"', stopped["lr~2e-4"])
    assert float(win[6]) == pytest.approx(0.20) and win[7] == "1"  # final small-eval score
    assert "winner, best by small eval" in stopped["lr~2e-4"]
    assert "The rule would have lost the winner: it would have stopped lr~2e-4" in section


def test_exhaustive_round_rule_keeping_the_winner_and_nothing_stopped(tmp_path):
    inputs = _inputs(tmp_path)
    _exhaustive(inputs, {"warmup~0.06"})
    section = _section(build_round_report(**inputs, out_html=tmp_path / "r.html").read_text())
    assert "would have stopped 1 run(s): warmup~0.06, saving 0 budget units" in section
    assert "The rule would not have stopped the winner: the best run by the small eval is " \
           "lr~2e-4 (final small-eval score 0.2)" in section
    _exhaustive(inputs, set())
    section = _section(build_round_report(**inputs, out_html=tmp_path / "r.html").read_text())
    assert "Early stopping was off in this round" in section and "would have stopped no run" \
        in section and "<table" not in section
    # early stopping on, nothing stopped: one line
    for path in inputs["decisions"].values():
        dec = json.loads(path.read_text())
        path.write_text(json.dumps({k: v for k, v in dec.items()
                                    if k not in ("rule_decision", "early_stop_enabled")}))
    section = _section(build_round_report(**inputs, out_html=tmp_path / "r.html").read_text())
    assert section.strip() == "<p>No run was early-stopped: every training ran to the end.</p>"


def test_reused_training_counts_zero_spent(tmp_path):
    inputs = _inputs(tmp_path)
    # lr~2e-4's training was copied from an identical training (both stages): not trained
    stage = tmp_path / "trainings" / "t-lr~2e-4"
    for name in ("probe", "final"):
        (stage / name).mkdir(parents=True)
        (stage / name / "identity.json").write_text(json.dumps(
            {"identity": "abc", "reused_from": f"results/round_a/trainings/t-x/{name}"}))
    log = stage / "final" / "train_log.nc"
    log.write_bytes(inputs["train_logs"]["lr~2e-4"].read_bytes())
    inputs["train_logs"] = {**inputs["train_logs"], "lr~2e-4": log}
    # base_s0's probe stage was copied, its continuation trained: 0.4 of its 1 unit is free
    stage = tmp_path / "trainings" / "t-base_s0"
    for name, src in (("probe", "results/round_a/trainings/t-y/probe"), ("final", None)):
        (stage / name).mkdir(parents=True)
        (stage / name / "identity.json").write_text(json.dumps({"identity": "d",
                                                                "reused_from": src}))
    log = stage / "final" / "train_log.nc"
    log.write_bytes(inputs["train_logs"]["base_s0"].read_bytes())
    inputs["train_logs"]["base_s0"] = log
    _timed_logs(inputs)
    html = build_round_report(**inputs, out_html=tmp_path / "r.html").read_text()
    # 1 h per training budget: t-base_s0 0.6 (its probe steps copied), t-base_s1 1,
    # t-lr~2e-4 0 (copied), t-lr~4.5e-4 1 (warmup~0.06's probe log on it not again), t-ema 0.4
    assert "Training compute used:</b> 3 of 5 budget units (60% of the exhaustive budget" in html
    assert "≈ 3 device-hours by the logged step times" in html
    # 4.4 units ran; 1 (lr~2e-4) + 0.4 (base_s0's probe) copied: 3 spent; sharing still 0.4
    assert "training compute spent 3 budget units (2 training(s) reused: copied from an " \
           "identical training, not trained, 1.4 units counted 0), 0.4 saved by sharing " \
           "(4.8 with one training per run)" in html
    assert "Training compute spent 3 of 5 budget units" in _section(html)


def _timed_logs(inputs, seconds=36.0):
    """Give every train log steps 1..n taking ``seconds`` each (100 steps = 1 hour)."""
    for path in set(inputs["train_logs"].values()):
        with xr.open_dataset(path) as ds:
            ds = ds.load()
        n = ds.sizes["step"]
        ds = ds.assign_coords(step=np.arange(1, n + 1.0))
        ds["step_time_s"] = ("step", np.full(n, seconds))
        ds.to_netcdf(path)


def test_training_hours_are_counted_per_training(tmp_path):
    inputs = _inputs(tmp_path)
    _timed_logs(inputs)
    summary = build_round_report(**inputs, out_html=tmp_path / "r.html").read_text() \
        .split("<h2>Ranking</h2>")[0]
    # warmup~0.06's 40 probe steps are the first steps of lr~4.5e-4's training: 4 x 1 h +
    # 0.4 h (ema~0.9999, diverged) = 4.4 h, not 4.8 h summed over the runs' logs
    assert "Training compute used:</b> 4.4 of 5 budget units (88% of the exhaustive budget: " \
           "every training to the end; runs that share a training count it once), ≈ 4.4 " \
           "device-hours by the logged step times" in summary
