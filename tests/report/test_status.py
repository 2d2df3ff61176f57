"""`physweep status`: fake round directories at each stage, written with the workflow's own
writers (training logs: Trainer.log_dataset + physweep.io.write_netcdf; progress files:
ProgressWriter; decisions: select.early_stop.decide against baseline_reference)."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr

from physweep.io import write_json, write_netcdf, write_yaml
from physweep.report.status import collect_status, format_status, watch
from physweep.select.early_stop import baseline_reference, decide
from physweep.train.progress import PROGRESS_NAME, ProgressWriter

ROUND = "round_t"
TOTAL, PROBE = 250, 88  # steps of a run; probe point = round(0.35 * 250)
RUNS = [("baseline", "baseline", True), ("baseline_seed~1", "baseline", True),
        ("lr~2e-4", "optimizer", False), ("lr~4.5e-4", "optimizer", False)]
SCORES = {"baseline": 0.60, "baseline_seed~1": 0.61, "lr~2e-4": 0.62, "lr~4.5e-4": 0.55}
OPTS = dict(use_squeue=False, probe_fraction=0.35, sigma_factor=1.0, budget_tokens=2048 * TOTAL,
            promotion_k=1)


class Round:
    """A results tree under ``root`` (Snakemake's working directory) filled stage by stage."""

    def __init__(self, root: Path, shared: bool = True, runs=RUNS,
                 training: dict[str, str] | None = None):
        """``shared``: the workflow's layout, training jobs in ``trainings/<training>/`` (the
        training of each run named in plan.json: ``training``, default one per run); False:
        the earlier per-run layout."""
        self.root = root
        self.results = root / "results"
        self.rdir = self.results / ROUND
        self.training = ((training or {r: f"t{i}" for i, (r, _, _) in enumerate(runs)})
                         if shared else {})
        write_json(self.rdir / "plan.json", {
            "round": ROUND, "title": "a test round", "objective": "nrmse", "preset": "demo",
            "runs": [{"run": r, "block": b, "baseline": base, "batch_tokens": "65536->2048",
                      **({"training": self.training[r]} if shared else {})}
                     for r, b, base in runs]})

    def run_dir(self, run: str) -> Path:
        return self.rdir / "runs" / run

    def train_dir(self, run: str) -> Path:
        return self.rdir / "trainings" / self.training[run] if self.training else self.run_dir(run)

    def train_log(self, run: str, stage: str, steps: int, status: str = "ok") -> None:
        from physweep.train.loop import LOG_SCALARS, Trainer

        step = np.arange(1, steps + 1)
        hist = {k: [0.5] * steps for k in LOG_SCALARS}
        hist.update(step=list(step), loss=list(2.0 / np.sqrt(step)), step_time_s=[0.5] * steps,
                    tokens_per_s=[4096.0] * steps, sampler_prob=[[0.5, 0.5]] * steps)
        trainer = SimpleNamespace(
            history=hist, split=SimpleNamespace(regime_names=["periodic", "irregular"]),
            spec={"run": run, "train": {"batch_tokens": 2048, "budget_tokens": 2048 * TOTAL}},
            status=status, diverged_step=-1, tokens_seen=2048 * steps, total_steps=TOTAL,
            segments=[{"device": "cpu", "threads": 1, "hardware": "test CPU", "hostname": "t",
                       "from_step": 0, "to_step": steps}])
        out = self.train_dir(run) / stage
        write_netcdf(Trainer.log_dataset(trainer, "none"), out / "train_log.nc")
        (out / "checkpoint.pt").write_bytes(b"checkpoint")
        self.job_log(run, "train_probe" if stage == "probe" else "train_finish", "done")

    def progress(self, run: str, stage: str, step: int, stop: int, started: float) -> None:
        clock = SimpleNamespace(t=started)
        w = ProgressWriter(self.train_dir(run) / stage / PROGRESS_NAME, run, stop, TOTAL, 2048,
                           2048 * TOTAL, clock=lambda: clock.t)
        for s in range(1, step + 1):
            clock.t += 0.5
            w.step(s, 1.0, 0.5, force=s == step)

    def eval(self, run: str, name: str, score: float, gates_pass: bool = True) -> Path:
        path = self.run_dir(run) / f"{name}.nc"
        ds = xr.Dataset({"gate_inflow": ("sample", np.full(3, 0.01 if gates_pass else 0.5)),
                         "gate_inflow_pass": ("sample", np.full(3, int(gates_pass), "int8"))},
                        attrs={"nrmse": score, "diverged": 0, "gates_pass": int(gates_pass)})
        write_netcdf(ds, path)
        self.job_log(run, {"probe_eval": "eval_probe"}.get(name, name), "done")
        return path

    def decisions(self, runs) -> None:
        base = baseline_reference([self.run_dir(r) / "probe_eval.nc" for r in
                                   ("baseline", "baseline_seed~1")], "nrmse")
        write_json(self.rdir / "baseline_probe.json", base)
        for run in runs:
            d = decide(run, run.startswith("baseline"), self.run_dir(run) / "probe_eval.nc",
                       base, "nrmse", 1.0, 0.35)
            write_json(self.run_dir(run) / "decision.json", d)

    def job_log(self, run: str, rule: str, text: str) -> Path:
        where = (f"trainings/{self.training[run]}" if self.training and rule.startswith("train_")
                 else run)
        path = self.results / "logs" / ROUND / where / f"{rule}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
        return path

    def marker(self, run: str | None, rel: str, jobid: str | None = None) -> None:
        training = rel.startswith(("probe/", "final/")) and self.training
        where = f"trainings/{self.training[run]}" if training else f"runs/{run}"
        key = f"results/{ROUND}/{where}/{rel}" if run else f"results/{rel}"
        path = self.root / ".snakemake" / "incomplete" / base64.urlsafe_b64encode(
            key.encode()).decode()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"external_jobid": jobid}))

    def snakemake_running(self) -> None:
        locks = self.root / ".snakemake" / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        (locks / "0.input.lock").write_text("")

    def status(self, **kw) -> dict:
        return collect_status(self.results, ROUND, workdir=self.root, **{**OPTS, **kw})


def by_run(st: dict) -> dict[str, dict]:
    return {r["run"]: r for r in st["runs"]}


def during(rnd: Round, started: float) -> None:
    """Both baselines past the probe point (baseline training on to the end, 120 steps done),
    lr~2e-4 training its probe (40 steps), lr~4.5e-4 not started."""
    for r in ("baseline", "baseline_seed~1"):
        rnd.train_log(r, "probe", PROBE)
        rnd.eval(r, "probe_eval", SCORES[r])
    rnd.decisions(["baseline", "baseline_seed~1"])
    rnd.snakemake_running()
    rnd.marker("baseline", "final/checkpoint.pt")
    rnd.job_log("baseline", "train_finish", "step 120/250")
    rnd.progress("baseline", "final", 120, TOTAL, started)
    rnd.marker("lr~2e-4", "probe/checkpoint.pt")
    rnd.job_log("lr~2e-4", "train_probe", "step 40/250")
    rnd.progress("lr~2e-4", "probe", 40, PROBE, started)


def test_before_anything_ran_every_run_is_planned(tmp_path):
    st = Round(tmp_path).status()
    assert [r["state"] for r in st["runs"]] == ["planned"] * 4
    assert all(r["total_steps"] == TOTAL and r["probe_step"] == PROBE for r in st["runs"])
    assert st["summary"]["by_state"] == {"planned": 4}
    c = st["summary"]["compute"]
    assert c["spent_budgets"] == 0 and c["planned_budgets"] == pytest.approx(4.0)
    assert st["summary"]["eta"]["eta_s"] is None and not st["snakemake_running"]
    assert "baseline band is not known yet" in format_status(st)


@pytest.mark.parametrize("shared", [True, False], ids=["trainings-layout", "per-run-layout"])
def test_during_training_steps_loss_eta_and_compute(tmp_path, shared):
    rnd = Round(tmp_path, shared)
    now = 1_800_000_000.0
    during(rnd, started=now - 100)
    # a half-written progress file (what a non-atomic writer could leave) is ignored, not fatal
    (rnd.run_dir("lr~4.5e-4") / "probe").mkdir(parents=True)
    (rnd.run_dir("lr~4.5e-4") / "probe" / PROGRESS_NAME).write_text('{"format": "physw')
    rnd.marker(None, "reference/channel_demo/full_eval.nc")  # not a run's job
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    st = rnd.status(now=now)
    runs = by_run(st)
    assert {r: v["state"] for r, v in runs.items()} == {
        "baseline": "training to end", "baseline_seed~1": "decided continue",
        "lr~2e-4": "training probe", "lr~4.5e-4": "planned"}
    b, lr = runs["baseline"], runs["lr~2e-4"]
    assert b["job"] == "train_finish running" and (b["step"], b["total_steps"]) == (120, TOTAL)
    assert b["eta_to"] == "end" and b["eta_s"] == pytest.approx((TOTAL - 120) * 0.5)
    assert lr["step"] == 40 and lr["loss"] == pytest.approx(1.0)
    assert lr["tokens_per_s"] == pytest.approx(4096) and lr["eta_to"] == "probe"
    assert lr["eta_s"] == pytest.approx((PROBE - 40) * 0.5)
    assert runs["baseline_seed~1"]["eta_s"] == pytest.approx((TOTAL - PROBE) * 0.5)
    assert runs["lr~4.5e-4"]["step"] is None and runs["lr~4.5e-4"]["eta_s"] == pytest.approx(
        PROBE * 0.5)
    s = st["summary"]
    assert s["compute"]["spent_budgets"] == pytest.approx((120 + PROBE + 40) / TOTAL)
    # still to train: the two probes, both baselines to the end, and (no decision of a swept
    # run yet) both swept runs to the end as an upper bound
    left = ((PROBE - 40) + PROBE + (TOTAL - 120) + (TOTAL - PROBE) + 2 * (TOTAL - PROBE)) / TOTAL
    assert s["compute"]["planned_budgets"] == pytest.approx(left)
    assert s["eta"]["parallel"] == 2 and s["eta"]["eta_s"] == pytest.approx(
        left * TOTAL * 0.5 / 2)
    d = s["decisions"]
    assert d["baseline"] == 2 and d["undecided"] == 2
    assert d["continue_below"] == pytest.approx(0.605 - np.std([0.60, 0.61], ddof=1))
    assert s["best"] == {"run": "baseline", "score": 0.60, "gates_pass": None, "eval": "probe"}
    text = format_status(st)
    assert "lr~2e-4" in text and "40/250" in text and "24s→probe" in text
    assert "2 job(s) running now" in text
    assert [(j["rule"], j["output"]) for j in s["other_jobs"]] == [
        ("eval_reference", "reference/channel_demo/full_eval.nc")]
    assert "other jobs in flight: eval_reference (reference/channel_demo/full_eval.nc" in text
    assert "train_finish running " in text  # with the time since it started
    # reading changed nothing
    assert before == {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}


def test_a_stale_progress_file_of_an_earlier_attempt_is_not_shown(tmp_path):
    rnd = Round(tmp_path)
    rnd.progress("lr~2e-4", "probe", 60, PROBE, started=1000.0)  # an old attempt
    rnd.snakemake_running()
    rnd.marker("lr~2e-4", "probe/checkpoint.pt")  # the new attempt just started (now)
    rnd.job_log("lr~2e-4", "train_probe", "loading data")
    lr = by_run(rnd.status())["lr~2e-4"]
    assert lr["state"] == "training probe" and lr["step"] is None


def test_a_failed_job_shows_its_log_and_the_rerun_command(tmp_path, monkeypatch):
    rnd = Round(tmp_path)
    during(rnd, started=1000.0)
    # lr~2e-4's training crashed: Snakemake removed its marker and outputs, the log stays
    (tmp_path / ".snakemake" / "incomplete" / base64.urlsafe_b64encode(
        f"results/{ROUND}/trainings/t2/probe/checkpoint.pt".encode()).decode()).unlink()
    rnd.job_log("lr~2e-4", "train_probe", "\n".join(
        [f"INFO step {i}/250 loss 1.0" for i in range(1, 41)]
        + ["ERROR physweep.job: job failed", "Traceback (most recent call last):",
           "RuntimeError: CUDA out of memory"]))
    monkeypatch.chdir(tmp_path)
    st = rnd.status(lines=3)
    lr = by_run(st)["lr~2e-4"]
    assert lr["state"] == "failed" and lr["step"] == 40  # its progress until it failed
    f = lr["failed"]
    assert f["rule"] == "train_probe" and f["last_lines"][-1] == "RuntimeError: CUDA out of memory"
    assert len(f["last_lines"]) == 3
    assert f["rerun"] == ("snakemake --cores 2 round_t --forcerun "
                          "'results/round_t/trainings/t2/probe/checkpoint.pt'")  # its training
    assert st["summary"]["failed"] == ["lr~2e-4"] and st["summary"]["eta"]["excludes_failed"] == 1
    text = format_status(st)
    assert "FAILED lr~2e-4: train_probe" in text and "| RuntimeError: CUDA out of memory" in text
    assert "rerun: snakemake --cores 2 round_t --forcerun" in text


def test_a_job_left_running_by_a_stopped_snakemake_is_reported_as_interrupted(tmp_path):
    rnd = Round(tmp_path)
    rnd.marker("lr~2e-4", "probe/checkpoint.pt")
    rnd.job_log("lr~2e-4", "train_probe", "step 3/250")
    lr = by_run(rnd.status())["lr~2e-4"]
    assert lr["state"] == "failed" and lr["failed"]["why"].startswith("interrupted")
    assert lr["failed"]["rerun"].endswith("snakemake --cores 2 round_t --rerun-incomplete")


def test_slurm_jobs_from_squeue(tmp_path, monkeypatch):
    rnd = Round(tmp_path)
    rnd.snakemake_running()
    rnd.marker("lr~2e-4", "probe/checkpoint.pt", jobid="1233")
    rnd.job_log("lr~2e-4", "train_probe", "step 5/250")
    rnd.progress("lr~2e-4", "probe", 5, PROBE, started=2e9)
    rnd.marker("lr~4.5e-4", "probe/checkpoint.pt", jobid="1234")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    squeue = bin_dir / "squeue"
    squeue.write_text("#!/bin/sh\necho '1233|RUNNING|rule_train_probe_wildcards_round_t_lr~2e-4'"
                      "\necho '1234|PENDING|rule_train_probe_wildcards_round_t_lr~4.5e-4'\n")
    squeue.chmod(squeue.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    runs = by_run(rnd.status(use_squeue=True))
    assert runs["lr~2e-4"]["state"] == "training probe" and runs["lr~2e-4"]["step"] == 5
    assert (runs["lr~2e-4"]["slurm_jobid"], runs["lr~2e-4"]["slurm_state"]) == ("1233", "RUNNING")
    assert runs["lr~4.5e-4"]["state"] == "queued"
    assert runs["lr~4.5e-4"]["job"] == "train_probe queued"
    assert runs["lr~4.5e-4"]["slurm_state"] == "PENDING"


def test_after_the_round_every_run_is_ranked(tmp_path, monkeypatch):
    import pandas as pd

    rnd = Round(tmp_path)
    for r, _, _ in RUNS:
        rnd.train_log(r, "probe", PROBE)
        rnd.eval(r, "probe_eval", SCORES[r])
    rnd.decisions([r for r, _, _ in RUNS])
    decided = {r: json.loads((rnd.run_dir(r) / "decision.json").read_text())["decision"]
               for r, _, _ in RUNS}
    assert decided == {"baseline": "baseline", "baseline_seed~1": "baseline", "lr~2e-4": "stop",
                       "lr~4.5e-4": "continue"}
    for r in ("baseline", "baseline_seed~1", "lr~4.5e-4"):
        rnd.train_log(r, "final", TOTAL)
        rnd.eval(r, "small_eval", SCORES[r] - 0.05, gates_pass=r != "lr~4.5e-4")
    write_json(rnd.rdir / "promoted.json", {"promoted": ["baseline"]})
    rnd.eval("baseline", "full_eval", 0.58)
    pd.DataFrame({"run": [r for r, _, _ in RUNS], "rank": [1, 2, 3, None],
                  "status": ["ok", "ok", "early_stopped", "ok"]}).to_csv(
        rnd.rdir / "ranking.csv", index=False)
    write_yaml(rnd.rdir / "winners.yaml", {"best": {"run": "baseline"}, "reason": "best"})
    st = rnd.status()
    runs = by_run(st)
    assert {r["state"] for r in st["runs"]} == {"ranked"}
    assert runs["lr~2e-4"]["decision"] == "stop" and runs["lr~2e-4"]["step"] == PROBE
    assert runs["lr~4.5e-4"]["small_score"] == pytest.approx(0.50)
    s = st["summary"]
    assert s["eta"]["text"] == "finished" and s["compute"]["planned_budgets"] == 0
    assert s["compute"]["spent_budgets"] == pytest.approx(3 + PROBE / TOTAL)
    assert s["decisions"]["saved_budgets"] == pytest.approx(0.65)
    assert s["best"]["run"] == "baseline" and s["best"]["lowest"]["run"] == "lr~4.5e-4"
    assert s["winner"]["run"] == "baseline"
    # a rerun forced after ranking: while the probe retrains, the run's later outputs are
    # left-overs (Snakemake will redo them), and once it has retrained they are older than it
    rnd.snakemake_running()
    rnd.marker("lr~2e-4", "probe/checkpoint.pt")
    lr = by_run(rnd.status())["lr~2e-4"]
    assert lr["state"] == "training probe" and lr["decision"] is None
    assert lr["jobs"]["train_probe"] == "running" and lr["jobs"]["decide"] == "waiting"
    (tmp_path / ".snakemake" / "incomplete").rename(tmp_path / "gone")
    future = time.time() + 10
    for f in ("checkpoint.pt", "train_log.nc"):
        os.utime(rnd.train_dir("lr~2e-4") / "probe" / f, (future, future))
    lr = by_run(rnd.status())["lr~2e-4"]
    assert lr["state"] == "probe done" and lr["jobs"]["eval_probe"] == "waiting"
    assert lr["stale"] == ["eval_probe"]  # Snakemake redoes it (and decide) on its next run
    assert lr["failed"] is None  # its old eval log is no failure: the eval has not run again
    json.dumps(st)  # JSON-able as it is


SHARED_RUNS = [("baseline", "baseline", True), ("baseline_seed~1", "baseline", True),
               ("a~1", "eval", False), ("a~2", "eval", False), ("b~1", "eval", False),
               ("b~2", "eval", False), ("c~1", "optimizer", False), ("d~1", "cadence", False)]
SHARED_TRAINING = {"baseline": "t0", "baseline_seed~1": "t1", "a~1": "ta", "a~2": "ta",
                   "b~1": "tb", "b~2": "tb", "c~1": "tc", "d~1": "td"}


def test_compute_spent_and_saved_are_counted_per_training_in_a_round_in_progress(tmp_path):
    """Runs share trainings (plan.json): a~1 stopped but a~2 continued on ta (training to the
    end, 150 steps so far); b~1 and b~2 both stopped on tb; c~1 diverged at the probe alone on
    tc; d~1's probe stage was copied from tb (identity.json reused_from), its final stage is
    training (200 steps so far). Spent so far and saved are counted per training, as the round
    report counts them (report.stopping), not per run."""
    from physweep.train.shared import record_identity

    rnd = Round(tmp_path, runs=SHARED_RUNS, training=SHARED_TRAINING)
    decisions = {"baseline": "baseline", "baseline_seed~1": "baseline", "a~1": "stop",
                 "a~2": "continue", "b~1": "stop", "b~2": "stop", "c~1": "diverged",
                 "d~1": "continue"}
    for t in ("baseline", "baseline_seed~1", "a~1", "b~1", "c~1", "d~1"):
        rnd.train_log(t, "probe", PROBE, status="diverged" if t == "c~1" else "ok")
        record_identity(rnd.train_dir(t) / "probe", f"id-{SHARED_TRAINING[t]}",
                        reused_from=str(rnd.train_dir("b~1") / "probe") if t == "d~1" else None)
    for r, _, _ in SHARED_RUNS:
        rnd.eval(r, "probe_eval", 0.6)
        write_json(rnd.run_dir(r) / "decision.json", {
            "decision": decisions[r], "run_score": 0.6, "probe_fraction": 0.35,
            "sigma_factor": 1.0})
    for r in ("baseline", "baseline_seed~1"):
        rnd.train_log(r, "final", TOTAL)
        record_identity(rnd.train_dir(r) / "final", f"id-{SHARED_TRAINING[r]}")
    rnd.snakemake_running()
    for run, step in (("a~2", 150), ("d~1", 200)):
        rnd.marker(run, "final/checkpoint.pt")
        rnd.progress(run, "final", step, TOTAL, started=time.time())
    st = rnd.status()
    runs = by_run(st)
    assert (runs["a~1"]["step"], runs["a~2"]["step"], runs["d~1"]["step"]) == (150, 150, 200)
    assert runs["a~2"]["training"] == runs["a~1"]["training"] == "ta"
    assert runs["a~2"]["state"] == "training to end" and runs["c~1"]["state"] == "diverged"
    s = st["summary"]
    c, d = s["compute"], s["decisions"]
    # per training: t0, t1 to the end; ta 150 steps once (not for a~1 and a~2 each); tb to the
    # probe once; tc to the probe; td's final stage only (its probe stage was copied)
    spent = 2 + (150 + PROBE + PROBE + (200 - PROBE)) / TOTAL
    per_run = 2 + (150 + 150 + PROBE + PROBE + PROBE + 200) / TOTAL  # what runs would count
    assert c["spent_budgets"] == pytest.approx(spent) and spent < per_run - 1
    assert c["spent_device_h"] == pytest.approx(spent * TOTAL * 0.5 / 3600)
    assert c["trainings"] == 6 and c["n_copied"] == 1
    assert c["copied_budgets"] == pytest.approx(PROBE / TOTAL)
    # saved: tb only (every run on it stopped); a~1's training continued for a~2, c~1 only
    # diverged: per run it would be 4 × 0.65
    assert d["saved_budgets"] == pytest.approx(0.65) and d["saved_trainings"] == 1
    assert d["stopped_sharing"] == ["a~1"]
    assert (d["stop"], d["diverged"], d["continue"]) == (3, 1, 2)
    rows = {t["training"]: t for t in s["trainings"]}
    assert rows["ta"]["runs"] == ["a~1", "a~2"] and not rows["ta"]["stopped"]
    assert rows["ta"]["saved"] == 0 and rows["tb"]["stopped"]
    assert rows["td"]["copied_from"] == [str(rnd.train_dir("b~1") / "probe")]
    assert rows["td"]["spent"] == pytest.approx((200 - PROBE) / TOTAL)
    text = format_status(st)
    assert f"compute: spent {spent:.2f} budgets" in text
    assert "early stopping saved 0.65 budgets (1 training(s) stopped at the probe)" in text
    assert "one training's full budget; 6 training(s) for 8 runs" in text
    assert "nothing saved: a~1" in text and "1 training(s) copied from identical ones" in text
    json.dumps(st)


def test_a_diverged_run(tmp_path):
    rnd = Round(tmp_path)
    for r in ("baseline", "baseline_seed~1", "lr~2e-4"):
        rnd.train_log(r, "probe", PROBE, status="diverged" if r == "lr~2e-4" else "ok")
        rnd.eval(r, "probe_eval", SCORES[r])
    ds_path = rnd.run_dir("lr~2e-4") / "probe_eval.nc"
    with xr.open_dataset(ds_path) as ds:
        ds = ds.load()
    ds.attrs["diverged"] = 1
    write_netcdf(ds, ds_path)
    rnd.decisions(["baseline", "baseline_seed~1", "lr~2e-4"])
    st = rnd.status()
    assert by_run(st)["lr~2e-4"]["state"] == "diverged"
    assert st["summary"]["decisions"]["diverged"] == 1


def test_cli_json_text_and_refusal(tmp_path, capsys, monkeypatch):
    from physweep.cli import main

    rnd = Round(tmp_path)
    during(rnd, started=time.time())
    monkeypatch.chdir(tmp_path)
    assert main(["status", ROUND, "--results", str(rnd.results), "--json", "--no-squeue"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["workdir"] == str(tmp_path) and by_run(st)["lr~2e-4"]["step"] == 40
    assert main(["status", ROUND, "--results", str(rnd.results), "--no-squeue"]) == 0
    assert "training probe" in capsys.readouterr().out
    assert main(["status", "round_zz", "--results", str(rnd.results), "--no-squeue"]) == 1
    assert "has not started" in capsys.readouterr().err


def test_watch_redraws_in_place():
    rich = pytest.importorskip("rich")
    import io

    from rich.console import Console

    frames = iter(["frame one", "frame two"])
    buf = io.StringIO()
    watch(lambda: next(frames), interval=0.01, count=2,
          console=Console(file=buf, force_terminal=True, width=80))
    out = buf.getvalue()
    assert "frame one" in out and "frame two" in out and "\x1b[" in out  # cursor moves
    assert rich is not None


def test_watch_into_a_file_prints_frame_after_frame(capsys):
    frames = iter(["frame one", "frame two"])
    watch(lambda: next(frames), interval=0.01, count=2)
    out = capsys.readouterr().out
    assert out == "frame one\n\nframe two\n"  # not a terminal: no cursor movement
