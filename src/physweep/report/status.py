"""`physweep status <round>`: where a round is, from the files the workflow writes.

Read-only, no daemon, no database. What it reads, per run (``results/<round>/runs/<run>/``):
``probe/progress.json`` and ``final/progress.json`` (a training job's progress, rewritten
atomically every ``physweep.train.progress.PROGRESS_EVERY_S`` seconds), ``{probe,final}/
train_log.nc`` (written once, atomically, when a training job ends), ``probe_eval.nc``,
``decision.json``, ``small_eval.nc``, ``full_eval.nc``; the training stages' ``identity.json``
(a stage copied from an identical training: ``reused_from``); per round ``plan.json``,
``baseline_probe.json``, ``promoted.json``, ``ranking.csv``, ``winners.yaml``; the jobs' logs
``results/logs/<round>/<run>/<rule>.log`` and run times ``results/benchmarks/...``; Snakemake's
own ``.snakemake/locks`` (is a Snakemake process running here?) and ``.snakemake/incomplete``
(which job outputs are being made, with the SLURM job id under the slurm executor); and
``squeue`` when it is on PATH. It never opens a checkpoint, and every file it reads is replaced
by a rename when written, so reading cannot disturb or see half of anything.

A run's state is the last milestone it reached (planned, queued, training probe, probe done,
decided continue|stop, training to end, evaluated, promoted, full-evaluated, ranked) unless one
of its jobs failed (failed) or its training diverged (diverged); the job column says what runs
for it now. A job's outputs count as Snakemake counts them: present and not older than the
outputs of the run's jobs they are made from (a forced rerun, a retried job); older ones are
listed as left-overs that Snakemake will redo. What it cannot see from files: outputs that a
changed config or code makes Snakemake redo (params and code triggers): ``snakemake -n``.

Compute spent so far and what early stopping saved are counted per training, by the round
report's rules (:mod:`physweep.report.stopping`): runs on one training (plan.json) share it.
"""

from __future__ import annotations

import base64
import getpass
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from physweep.io import load_yaml
from physweep.train.progress import PROGRESS_NAME, read_progress

#: per-run jobs in pipeline order: rule -> outputs relative to the run directory
RUN_JOBS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("train_probe", ("probe/checkpoint.pt", "probe/train_log.nc")),
    ("eval_probe", ("probe_eval.nc",)),
    ("decide", ("decision.json",)),
    ("train_finish", ("final/checkpoint.pt", "final/train_log.nc")),
    ("small_eval", ("small_eval.nc",)),
    ("full_eval", ("full_eval.nc",)),
)
TRAIN_RULES = {"train_probe": "probe", "train_finish": "final"}
EVAL_RULES = ("eval_probe", "small_eval", "full_eval")
STATES = ("planned", "queued", "training probe", "probe done", "decided continue",
          "decided stop", "training to end", "evaluated", "promoted", "full-evaluated", "ranked",
          "failed", "diverged")
#: squeue states of a job that waits for resources
PENDING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
           "SUSPENDED"}
ERROR_RE = re.compile(r"Traceback|\bERROR\b|job failed|Error in rule|Killed|MemoryError")
_CACHE: dict[tuple[str, int], Any] = {}


# ----------------------------------------------------------------------------- sources


@dataclass
class SnakemakeState:
    """What Snakemake's working directory tells: is a Snakemake process running there (its
    lock files), and which outputs are being made (incomplete markers: output path -> SLURM
    job id or None, marker time)."""

    path: Path
    running: bool = False
    incomplete: dict[str, dict[str, Any]] = field(default_factory=dict)


def read_snakemake_dir(workdir: Path) -> SnakemakeState:
    path = Path(workdir) / ".snakemake"
    state = SnakemakeState(path)
    locks = path / "locks"
    state.running = locks.is_dir() and any(locks.glob("*.lock"))
    inc = path / "incomplete"
    if not inc.is_dir():
        return state
    for dirpath, _, files in os.walk(inc):
        for name in files:
            full = Path(dirpath) / name
            parts = full.relative_to(inc).parts
            # long keys are split into chunks: every directory chunk starts with "@"
            encoded = "".join(p[1:] if p.startswith("@") else p for p in parts)
            try:
                key = base64.urlsafe_b64decode(encoded.encode()).decode()
            except (ValueError, UnicodeDecodeError):
                continue  # e.g. "migration_underway"
            try:
                content = json.loads(full.read_text() or "{}")
            except (OSError, ValueError):
                content = {}
            jobid = content.get("external_jobid") if isinstance(content, dict) else None
            try:
                since = full.stat().st_mtime
            except OSError:
                since = None
            state.incomplete[os.path.normpath(key)] = {"jobid": jobid, "since": since}
    return state


def read_squeue(timeout: float = 10.0) -> dict[str, dict[str, str]] | None:
    """This user's SLURM jobs, ``jobid -> {"state", "comment"}``; None without squeue. The
    snakemake slurm executor comments each job ``rule_<rule>_wildcards_<w1>_<w2>``."""
    exe = shutil.which("squeue")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-h", "-u", getpass.getuser(), "-o", "%i|%T|%k"],
                             capture_output=True, text=True, timeout=timeout, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    jobs = {}
    for line in out.splitlines():
        jobid, _, rest = line.strip().partition("|")
        state, _, comment = rest.partition("|")
        if jobid:
            jobs[jobid] = {"state": state, "comment": comment}
    return jobs


def _cached(path: Path, reader):
    try:
        key = (str(path), path.stat().st_mtime_ns)
    except OSError:
        return None
    if key not in _CACHE:
        try:
            _CACHE[key] = reader(path)
        except Exception:  # noqa: BLE001 - a file we cannot read shows as missing
            _CACHE[key] = None
    return _CACHE[key]


def _read_train_log(path: Path) -> dict[str, Any]:
    import numpy as np
    import xarray as xr

    with xr.open_dataset(path) as ds:
        steps = np.asarray(ds["step"].values, dtype=float)
        loss = np.asarray(ds["loss"].values, dtype=float) if "loss" in ds else np.array([])
        dt = np.asarray(ds["step_time_s"].values, dtype=float) if "step_time_s" in ds \
            else np.array([])
        tps = np.asarray(ds["tokens_per_s"].values, dtype=float) if "tokens_per_s" in ds \
            else np.array([])
        attrs = dict(ds.attrs)
    finite_loss = loss[np.isfinite(loss)]
    try:
        train = json.loads(attrs.get("run_spec", "{}")).get("train", {})
    except ValueError:
        train = {}
    return {
        "step": int(steps[-1]) if steps.size else 0,
        "total_steps": int(attrs.get("steps_total", 0)) or None,
        "status": str(attrs.get("status", "ok")),
        "loss": float(finite_loss[-10:].mean()) if finite_loss.size else None,
        "s_per_step": _median(dt[-50:]), "tokens_per_s": _median(tps[-50:]),
        "batch_tokens": train.get("batch_tokens"), "budget_tokens": train.get("budget_tokens"),
    }


def _median(values) -> float | None:
    vals = [float(v) for v in values if math.isfinite(float(v))]
    return float(statistics.median(vals)) if vals else None


def _read_eval_score(objective: str):
    def reader(path: Path) -> dict[str, Any]:
        from physweep.select.scores import objective_score, read_eval

        summary = read_eval(path)
        score = objective_score(summary, objective)
        return {"score": score if math.isfinite(score) else None,
                "gates_pass": bool(summary.get("gates_pass")),
                "diverged": bool(summary.get("diverged"))}
    return reader


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _benchmark_s(path: Path) -> float | None:
    """Wall-clock seconds of a finished job (Snakemake benchmark TSV, column ``s``)."""
    try:
        lines = path.read_text().splitlines()
        head = lines[0].split("\t")
        return float(lines[1].split("\t")[head.index("s")])
    except (OSError, IndexError, ValueError):
        return None


def tail(path: Path, lines: int = 10) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64_000))
            text = fh.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


# ----------------------------------------------------------------------------- per run


@dataclass
class RunStatus:
    run: str
    block: str
    baseline: bool
    state: str = "planned"
    job: str | None = None  # the run's job in flight: "train_probe running", ...
    job_rule: str | None = None
    slurm_jobid: str | None = None
    slurm_state: str | None = None
    step: int | None = None  # optimizer steps done (the run's latest training job)
    total_steps: int | None = None
    probe_step: int | None = None
    loss: float | None = None
    tokens_per_s: float | None = None
    s_per_step: float | None = None
    eta_s: float | None = None  # training time left before its next milestone
    eta_to: str | None = None  # "probe" | "end"
    decision: str | None = None
    probe_score: float | None = None
    small_score: float | None = None
    full_score: float | None = None
    gates_pass: bool | None = None
    rank: int | None = None
    failed: dict[str, Any] | None = None
    progress_age_s: float | None = None
    job_since: float | None = None  # when Snakemake started (or submitted) that job
    jobs: dict[str, str] = field(default_factory=dict)  # rule -> done|running|queued|...
    stale: list[str] = field(default_factory=list)  # jobs whose outputs predate their inputs
    spent_steps: int = 0  # its training's steps so far (the round counts a shared one once)
    training: str | None = None  # the training it runs on (plan.json; None: its own, per run)


@dataclass
class Context:
    results: Path
    round: str
    workdir: Path
    results_key: str  # results directory as Snakemake names outputs (relative to workdir)
    snakemake: SnakemakeState
    squeue: dict[str, dict[str, str]] | None
    objective: str
    probe_fraction: float
    now: float
    training: dict[str, str] = field(default_factory=dict)  # run -> its training (plan.json)


def _job_dir(ctx: Context, run: str, rule: str) -> str:
    """Where a job of the run writes, relative to the results directory: a training job in its
    training's directory (``trainings/<training>``: shared by the runs that differ only in
    evaluation-time knobs), every other job in the run's."""
    if rule in TRAIN_RULES and run in ctx.training:
        return f"{ctx.round}/trainings/{ctx.training[run]}"
    return f"{ctx.round}/runs/{run}"


def _key(ctx: Context, run: str, rel: str, rule: str = "") -> str:
    return os.path.normpath(f"{ctx.results_key}/{_job_dir(ctx, run, rule)}/{rel}")


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _job_state(ctx: Context, run: str, rule: str, outputs: tuple[str, ...],
               after: float | None) -> dict[str, Any]:
    """One job of a run: done | running | queued | interrupted | failed | waiting.

    ``after``: when its inputs (the run's earlier jobs' outputs) were made; None without
    inputs, inf when they are not all made. Outputs older than their inputs are left over from
    an earlier attempt (a forced rerun, a changed config): not done, as Snakemake sees them."""
    rd = ctx.results / _job_dir(ctx, run, rule)
    shared = rule in TRAIN_RULES and run in ctx.training
    log = ctx.results / "logs" / (_job_dir(ctx, run, rule) if shared else f"{ctx.round}/{run}") \
        / f"{rule}.log"
    out = {"rule": rule, "log": log, "jobid": None, "slurm_state": None, "since": None,
           "mtime": None, "after": after}
    markers = [ctx.snakemake.incomplete.get(_key(ctx, run, o, rule))
               or ctx.snakemake.incomplete.get(str(rd / o)) for o in outputs]
    marker = next((m for m in markers if m), None)
    comment = f"rule_{rule}_wildcards_{ctx.round}_{ctx.training[run] if shared else run}"
    slurm = None
    if ctx.squeue is not None:
        if marker and marker.get("jobid") and str(marker["jobid"]) in ctx.squeue:
            slurm = (str(marker["jobid"]), ctx.squeue[str(marker["jobid"])]["state"])
        else:
            slurm = next(((j, v["state"]) for j, v in ctx.squeue.items()
                          if v["comment"] == comment), None)
    if slurm:
        out["jobid"], out["slurm_state"] = slurm
        out["state"] = "queued" if slurm[1] in PENDING else "running"
        out["since"] = marker.get("since") if marker else None
        return out
    if marker:
        out["jobid"] = marker.get("jobid")
        out["since"] = marker.get("since")
        # a marker without a Snakemake process (and without a SLURM job) was left behind
        alive = ctx.snakemake.running or (marker.get("jobid") and ctx.squeue is None)
        out["state"] = "running" if alive else "interrupted"
        return out
    mtimes = [_mtime(rd / o) for o in outputs]
    out["exists"] = all(m is not None for m in mtimes)
    if out["exists"] and (after is None or min(mtimes) >= after - 1):
        out["state"], out["mtime"] = "done", max(mtimes)
        return out
    tried = _mtime(log)  # an attempt after its inputs were made, that left no outputs
    out["state"] = ("failed" if tried is not None and (after is None or tried >= after - 1)
                    and not all(m is not None for m in mtimes) else "waiting")
    return out


def _rerun_command(ctx: Context, run: str, rule: str, outputs: tuple[str, ...], slurm: bool,
                   preset: str | None, interrupted: bool) -> str:
    target = f"{ctx.results_key}/{_job_dir(ctx, run, rule)}/{outputs[0]}"
    how = "--profile slurm" if slurm else "--cores 2"
    extra = f" --config preset={preset}" if preset and preset != "demo" else ""
    cmd = f"snakemake {how} {ctx.round}{extra} --forcerun '{target}'"
    if interrupted:
        cmd = f"snakemake {how} {ctx.round}{extra} --rerun-incomplete"
    if Path(ctx.workdir).resolve() != Path.cwd().resolve():
        cmd = f"cd {ctx.workdir} && {cmd}"
    return cmd


#: the run's jobs whose outputs each job reads (the rules' inputs within the run)
RUN_DEPS = {"train_probe": (), "eval_probe": ("train_probe",), "decide": ("eval_probe",),
            "train_finish": ("train_probe", "decide"), "small_eval": ("train_finish",),
            "full_eval": ("train_finish",)}


def run_status(ctx: Context, run: str, block: str, baseline: bool, promoted: set[str],
               ranking: dict[str, dict[str, Any]] | None, ranking_mtime: float | None,
               preset: str | None, lines: int = 10, promoted_mtime: float | None = None
               ) -> RunStatus:
    rs = RunStatus(run, block, baseline, training=ctx.training.get(run))
    rd = ctx.results / ctx.round / "runs" / run
    jobs = _run_jobs(ctx, run)
    rs.jobs = {rule: j["state"] for rule, j in jobs.items()}
    # left-overs next to current inputs (behind a job in flight, they are redone anyway)
    rs.stale = [rule for rule, j in jobs.items() if j["state"] == "waiting" and j.get("exists")
                and j["after"] != math.inf]
    done = {rule for rule, j in jobs.items() if j["state"] == "done"}
    _read_decision(rs, rd, done)
    _read_training(rs, ctx, rd, jobs, done)
    rs.spent_steps = rs.step or 0
    if rs.total_steps:
        rs.probe_step = round(ctx.probe_fraction * rs.total_steps)
    small, full, eval_diverged = _read_evals(rs, ctx, rd, done)
    active, broken = _job_in_flight(rs, ctx, run, jobs, preset, lines)
    # --- state: the last milestone, unless failed or diverged
    newest = max((jobs[r]["mtime"] for r in done), default=None)
    ranked = (ranking is not None and run in ranking and not active and not broken
              and not rs.stale and "eval_probe" in done and ranking_mtime is not None
              and (newest is None or newest <= ranking_mtime + 1))
    is_promoted = (run in promoted and "small_eval" in done and promoted_mtime is not None
                   and jobs["small_eval"]["mtime"] <= promoted_mtime + 1)
    if ranked:
        row = ranking[run]
        rs.rank = int(row["rank"]) if _is_num(row.get("rank")) else None
        if str(row.get("status")) == "diverged":
            rs.decision = "diverged"
    rs.state = _milestone(rs, jobs, done, ranked=ranked, promoted=is_promoted, small=small,
                          full=full, eval_diverged=eval_diverged)
    # --- the run's next training milestone (collect_status computes the ETA to it)
    if rs.state in ("planned", "queued", "training probe"):
        rs.eta_to = "probe"
    elif rs.state in ("decided continue", "training to end"):
        rs.eta_to = "end"
    return rs


def _run_jobs(ctx: Context, run: str) -> dict[str, dict[str, Any]]:
    """The state of each of the run's jobs, in pipeline order, each against its inputs."""
    jobs: dict[str, dict[str, Any]] = {}
    for rule, outs in RUN_JOBS:
        deps = RUN_DEPS[rule]
        ready = all(jobs[d]["state"] == "done" for d in deps)
        after = (max((jobs[d]["mtime"] for d in deps), default=None) if ready else math.inf)
        jobs[rule] = _job_state(ctx, run, rule, outs, after)
    return jobs


def _read_decision(rs: RunStatus, rd: Path, done: set[str]) -> None:
    """The run's decision and probe score from a current ``decision.json``."""
    decision = _read_json(rd / "decision.json") if "decide" in done else None
    if isinstance(decision, dict):
        rs.decision = decision.get("decision")
        score = decision.get("run_score")
        rs.probe_score = float(score) if isinstance(score, (int, float)) and math.isfinite(
            score) else None


def _read_training(rs: RunStatus, ctx: Context, rd: Path, jobs: dict[str, dict[str, Any]],
                   done: set[str]) -> None:
    """Training: the log of a finished job, the progress of the one in flight (or failed)."""
    for rule, stage in TRAIN_RULES.items():
        job = jobs[rule]
        if rule in done:
            td = ctx.results / _job_dir(ctx, rs.run, rule)  # the run's training
            info = _cached(td / stage / "train_log.nc", _read_train_log)
            if info:
                rs.total_steps = info["total_steps"] or rs.total_steps
                rs.step, rs.loss = info["step"], info["loss"]
                rs.s_per_step, rs.tokens_per_s = info["s_per_step"], info["tokens_per_s"]
                if info["status"] == "diverged":
                    rs.decision = rs.decision or "diverged"
            continue
        if job["state"] not in ("running", "failed", "interrupted"):
            continue
        p = read_progress(ctx.results / _job_dir(ctx, rs.run, rule) / stage / PROGRESS_NAME)
        since = job.get("since")
        if p is None or (since and p.get("started", 0) < since - 60):
            continue  # none yet, or a previous attempt's: this job has not written its own
        if job["state"] != "running" and p.get("started", 0) < (job["after"] or 0) - 1:
            continue  # written before this job's inputs: not the attempt that failed
        rs.total_steps = p.get("total_steps") or rs.total_steps
        rs.step = int(p.get("step") or 0)
        rs.loss = p.get("loss") if p.get("loss") is not None else rs.loss
        rs.s_per_step = p.get("s_per_step") or rs.s_per_step
        rs.tokens_per_s = p.get("tokens_per_s") or rs.tokens_per_s
        rs.progress_age_s = max(0.0, ctx.now - float(p.get("time", ctx.now)))
        if p.get("status") == "diverged":
            rs.decision = rs.decision or "diverged"


def _read_evals(rs: RunStatus, ctx: Context, rd: Path, done: set[str]):
    """Evaluations (current ones only): (small, full, whether an evaluation diverged)."""
    reader = _read_eval_score(ctx.objective)
    small = _cached(rd / "small_eval.nc", reader) if "small_eval" in done else None
    full = _cached(rd / "full_eval.nc", reader) if "full_eval" in done else None
    probe_eval = _cached(rd / "probe_eval.nc", reader) if "eval_probe" in done else None
    if rs.probe_score is None and probe_eval:
        rs.probe_score = probe_eval["score"]
    if small:
        rs.small_score, rs.gates_pass = small["score"], small["gates_pass"]
    elif probe_eval and rs.decision in ("stop", "diverged"):
        rs.gates_pass = probe_eval["gates_pass"]  # a stopped run's record is its probe eval
    if full:
        rs.full_score = full["score"]
    eval_diverged = any(e and e["diverged"] for e in (small, full))
    return small, full, eval_diverged


def _job_in_flight(rs: RunStatus, ctx: Context, run: str, jobs: dict[str, dict[str, Any]],
                   preset: str | None, lines: int):
    """The job in flight, or the one that failed (with its log and rerun command):
    (active, broken) jobs."""
    active = next((j for j in jobs.values() if j["state"] in ("running", "queued")), None)
    broken = next((j for j in jobs.values() if j["state"] in ("failed", "interrupted")), None)
    if active:
        rs.job_rule = active["rule"]
        rs.job = f"{active['rule']} {active['state']}"
        rs.job_since = active.get("since")
        rs.slurm_jobid = str(active["jobid"]) if active["jobid"] else None
        rs.slurm_state = active["slurm_state"]
    if broken and not active:
        outs = dict(RUN_JOBS)[broken["rule"]]
        slurm = bool(broken.get("jobid")) or (ctx.snakemake.path / "slurm_logs").is_dir()
        interrupted = broken["state"] == "interrupted"
        rs.failed = {
            "rule": broken["rule"], "log": str(broken["log"]),
            "why": ("interrupted: Snakemake stopped while the job ran (its incomplete marker "
                    "is still there)" if interrupted else "the job ended without its outputs"),
            "last_lines": tail(broken["log"], lines),
            "rerun": _rerun_command(ctx, run, broken["rule"], outs, slurm, preset, interrupted),
        }
        rs.job = f"{broken['rule']} {broken['state']}"
        rs.job_rule = broken["rule"]
    return active, broken


def _milestone(rs: RunStatus, jobs: dict[str, dict[str, Any]], done: set[str], *, ranked: bool,
               promoted: bool, small, full, eval_diverged: bool) -> str:
    """The run's state: the last milestone it reached, unless it failed or diverged."""
    if rs.failed:
        return "failed"
    if rs.decision == "diverged" or eval_diverged:
        return "diverged"
    if ranked:
        return "ranked"
    if full:
        return "full-evaluated"
    if promoted:
        return "promoted"
    if small:
        return "evaluated"
    if rs.decision in ("continue", "baseline") and (
            jobs["train_finish"]["state"] == "running" and rs.slurm_state not in PENDING
            or "train_finish" in done):
        return "training to end"
    if rs.decision in ("continue", "baseline"):
        return "decided continue"
    if rs.decision == "stop":
        return "decided stop"
    if "train_probe" in done:
        return "probe done"
    if jobs["train_probe"]["state"] == "running":
        return "training probe"
    if jobs["train_probe"]["state"] == "queued":
        return "queued"
    return rs.state


def _is_num(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


# ----------------------------------------------------------------------------- per round


def _batch_of(plan_run: dict[str, Any]) -> int | None:
    m = re.search(r"->\s*(\d+)", str(plan_run.get("batch_tokens", "")))
    return int(m.group(1)) if m else None


def collect_status(results: Path, round_name: str, *, workdir: Path | None = None,
                   results_key: str | None = None, use_squeue: bool = True,
                   probe_fraction: float = 0.35, sigma_factor: float | None = None,
                   budget_tokens: int | None = None, promotion_k: int | None = None,
                   lines: int = 10, now: float | None = None, plan: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
    """Everything `physweep status` shows, as a JSON-able dict.

    ``results``: the results directory; ``workdir``: Snakemake's working directory (its
    ``.snakemake``; default: the results directory's parent); ``results_key``: the results
    directory as Snakemake names outputs (default: relative to ``workdir``). ``probe_fraction``,
    ``sigma_factor``, ``budget_tokens`` (a run's training budget, tokens) and ``promotion_k``:
    the config's, used until the round's own files say (decisions, training logs).
    ``plan``: the run table to use while ``plan.json`` is not written yet."""
    results = Path(results)
    workdir = Path(workdir) if workdir is not None else results.parent
    if results_key is None:
        try:
            results_key = os.path.relpath(results.resolve(), workdir.resolve())
        except ValueError:
            results_key = str(results)
    rdir = results / round_name
    stored = _read_json(rdir / "plan.json")
    plan = stored if isinstance(stored, dict) else plan
    if not isinstance(plan, dict):
        raise FileNotFoundError(f"{rdir / 'plan.json'} not found: round {round_name} has not "
                                f"started in {results} (nothing planned yet)")
    now = time.time() if now is None else now
    decisions = {p.parent.name: _read_json(p) for p in rdir.glob("runs/*/decision.json")}
    fractions = {d.get("probe_fraction") for d in decisions.values() if isinstance(d, dict)}
    if len(fractions) == 1 and _is_num(next(iter(fractions))):
        probe_fraction = float(next(iter(fractions)))
    ctx = Context(results, round_name, workdir, results_key, read_snakemake_dir(workdir),
                  read_squeue() if use_squeue else None, plan.get("objective", "nrmse"),
                  probe_fraction, now,
                  {str(r["run"]): str(r["training"]) for r in plan.get("runs", [])
                   if isinstance(r, dict) and r.get("training")})
    promoted_doc = _read_json(rdir / "promoted.json")
    promoted = set(promoted_doc.get("promoted", [])) if isinstance(promoted_doc, dict) else set()
    ranking, ranking_mtime = _read_ranking(rdir)
    plan_runs = plan.get("runs", [])
    promoted_mtime = _mtime(rdir / "promoted.json")
    runs = [run_status(ctx, r["run"], r.get("block", ""), bool(r.get("baseline")), promoted,
                       ranking, ranking_mtime, plan.get("preset"), lines, promoted_mtime)
            for r in plan_runs]
    s_step = _fill_steps_and_etas(ctx, runs, plan_runs, budget_tokens)
    summary = _round_summary(ctx, runs, s_step, promoted, sigma_factor, promotion_k, ranking)
    summary["other_jobs"] = _other_jobs(ctx)
    return {"round": round_name, "title": plan.get("title", ""), "objective": ctx.objective,
            "preset": plan.get("preset"), "results": str(results), "workdir": str(workdir),
            "time": now, "snakemake_running": ctx.snakemake.running,
            "squeue": ctx.squeue is not None, "summary": _jsonable(summary),
            "runs": [_jsonable(asdict(r)) for r in runs]}


def _read_ranking(rdir: Path) -> tuple[dict[str, dict[str, Any]] | None, float | None]:
    """The round's ``ranking.csv`` (run -> row) and its mtime; (None, None) without one."""
    ranking, ranking_mtime = None, None
    if (rdir / "ranking.csv").exists():
        import pandas as pd

        try:
            df = pd.read_csv(rdir / "ranking.csv", dtype={"run": str})
            ranking = {str(r["run"]): dict(r) for _, r in df.iterrows()}
            ranking_mtime = (rdir / "ranking.csv").stat().st_mtime
        except (OSError, ValueError, KeyError):
            ranking = None
    return ranking, ranking_mtime


def _fill_steps_and_etas(ctx: Context, runs: list[RunStatus], plan_runs: list[dict[str, Any]],
                         budget_tokens: int | None) -> float | None:
    """Fill the total steps of runs that have not written anything yet (the round's budget
    over the run's batch) and every run's ETA; returns the round's median seconds per step."""
    rdir = ctx.results / ctx.round
    budgets = [p.get("budget_tokens") for p in (
        _cached(rdir / "runs" / r.run / s / "train_log.nc", _read_train_log)
        or read_progress(rdir / "runs" / r.run / s / PROGRESS_NAME) or {}
        for r in runs for s in ("probe", "final"))]
    budgets = [int(b) for b in budgets if _is_num(b)]
    budget = budgets[0] if budgets else budget_tokens
    known_s = [r.s_per_step for r in runs if r.s_per_step]
    s_step = statistics.median(known_s) if known_s else None
    totals = [r.total_steps for r in runs if r.total_steps]
    for r, p in zip(runs, plan_runs, strict=True):
        if not r.total_steps:
            batch = _batch_of(p)
            r.total_steps = (budget // batch if budget and batch
                             else (statistics.mode(totals) if totals else None))
            if r.total_steps:
                r.probe_step = round(ctx.probe_fraction * r.total_steps)
        # ETA of the run: its training left before that milestone, at its own speed (the
        # round's median speed before it has one); its evaluations are not included
        speed = r.s_per_step or s_step
        target = r.probe_step if r.eta_to == "probe" else r.total_steps
        if r.eta_to and speed and target is not None:
            start = (r.step or 0) if r.state in ("training probe", "decided continue",
                                                 "training to end") else 0
            r.eta_s = max(0, target - start) * speed
    return s_step


#: outputs of the jobs that are not a run's: (pattern relative to the results directory, rule)
OTHER_JOBS = ((r"data/[^/]+/train\.nc", "prepare_data"),
              (r"reference/[^/]+/checkpoint\.pt", "train_reference"),
              (r"reference/[^/]+/(small|full)_eval\.nc", "eval_reference"),
              (r"{round}/plan\.json", "plan"), (r"{round}/baseline_probe\.json", "baseline_probe"),
              (r"{round}/blocks/[^/]+/winner\.yaml", "block_winner"),
              (r"{round}/promoted\.json", "promote"), (r"{round}/ranking\.csv", "rank"),
              (r"{round}/report\.html", "report"))


def _other_jobs(ctx: Context) -> list[dict[str, Any]]:
    """Jobs in flight that are not a run's own (data, reference model, selection, report)."""
    out = []
    prefix = os.path.normpath(ctx.results_key) + os.sep
    for key, marker in ctx.snakemake.incomplete.items():
        rel = key[len(prefix):] if key.startswith(prefix) else None
        if rel is None:
            continue
        for pattern, rule in OTHER_JOBS:
            if re.fullmatch(pattern.replace("{round}", re.escape(ctx.round)), rel):
                out.append({"rule": rule, "output": rel, "since": marker.get("since"),
                            "jobid": marker.get("jobid")})
    return out


def _round_summary(ctx: Context, runs: list[RunStatus], s_step: float | None,
                   promoted: set[str], sigma_factor: float | None, promotion_k: int | None,
                   ranking) -> dict[str, Any]:
    rdir = ctx.results / ctx.round
    by_state = Counter(r.state for r in runs)
    ledger = training_ledger(ctx, runs)
    decisions = _decision_summary(ctx, runs, sigma_factor, ledger)
    compute, s_budget, n_probe_evals, n_small_evals = _compute_summary(runs, s_step, ledger)
    bench, eval_s = _eval_seconds(ctx, runs, promoted, promotion_k, ranking, n_probe_evals,
                                  n_small_evals)
    failed = [r for r in runs if r.state == "failed"]
    eta = _round_eta(ctx, runs, ranking, compute["planned_budgets"], s_budget, eval_s)
    eta["excludes_failed"] = len(failed)
    return {"runs": len(runs), "by_state": {s: by_state[s] for s in STATES if by_state[s]},
            "decisions": decisions, "compute": compute, "best": _best_so_far(runs),
            "trainings": [_training_row(t) for t in ledger],
            "winner": _round_winner(rdir), "eta": eta, "failed": [r.run for r in failed],
            "eval_s": {k: v for k, v in bench.items() if v is not None}}


def _decision_summary(ctx: Context, runs: list[RunStatus], sigma_factor: float | None,
                      ledger: list) -> dict[str, Any]:
    """Decisions so far, against the baseline band, and the budgets early stopping saved so
    far, per training as the round report counts them (``saved_budgets``: 1 − probe fraction
    for each training every run of which ended at the probe, at least one by the σ rule; a
    stopped run whose training continued for another run, or is still undecided, saves
    nothing, and a training only diverged saves nothing; before issue #12's per-training count
    it was 1 − probe fraction per stopped or diverged run). ``saved_trainings``: those
    trainings; ``stopped_sharing``: stopped runs whose training continued for another run."""
    rdir = ctx.results / ctx.round
    decided = [r for r in runs if r.decision]
    counts = Counter(r.decision for r in decided)
    base = _read_json(rdir / "baseline_probe.json")
    decisions = {"continue": counts.get("continue", 0), "stop": counts.get("stop", 0),
                 "diverged": counts.get("diverged", 0), "baseline": counts.get("baseline", 0),
                 "undecided": len(runs) - len(decided)}
    sf = sigma_factor
    for p in rdir.glob("runs/*/decision.json"):
        d = _read_json(p)
        if isinstance(d, dict) and _is_num(d.get("sigma_factor")):
            sf = float(d["sigma_factor"])
            break
    if isinstance(base, dict) and _is_num(base.get("mean")):
        decisions["baseline_mean"] = float(base["mean"])
        decisions["sigma"] = float(base["sigma"]) if _is_num(base.get("sigma")) else None
        decisions["sigma_method"] = base.get("sigma_method")
        decisions["sigma_factor"] = sf
        if decisions["sigma"] is not None and sf is not None:
            decisions["continue_below"] = decisions["baseline_mean"] - sf * decisions["sigma"]
    from physweep.report.stopping import ledger_totals

    totals = ledger_totals(ledger)
    decisions["saved_budgets"] = totals.saved
    decisions["saved_trainings"] = totals.n_stopped
    decisions["stopped_sharing"] = [r for t in ledger if not t.stopped and len(t.runs) > 1
                                    for r in t.runs if t.decisions[r] == "stop"]
    return decisions


def training_ledger(ctx: Context, runs: list[RunStatus]) -> list:
    """The round's trainings so far, as :class:`physweep.report.stopping.Training` (the round
    report's per-training count, on a round in progress): the runs on one training (plan.json;
    without it one training per run) share it. Its fraction is the furthest step any of its
    stages reached over its budget in steps (its runs all read the same training jobs); its
    decisions are its runs' so far (an undecided run keeps it going). A stage whose job is done
    and whose ``identity.json`` records ``reused_from`` was copied from an identical training,
    not trained: it costs 0; a stage with steps that is not done is being (or was) trained."""
    from physweep.report.model import stage_records
    from physweep.report.stopping import Training, copied_units

    groups: dict[str, list[RunStatus]] = {}
    for r in runs:
        groups.setdefault(r.training or r.run, []).append(r)
    out = []
    for name, members in groups.items():
        total = max((r.total_steps for r in members if r.total_steps), default=None)
        step = max((r.step or 0 for r in members), default=0)
        fraction = step / total if total else (0.0 if not step else math.nan)
        probe_step = round(ctx.probe_fraction * total) if total else None
        records = (stage_records(ctx.results / ctx.round / "trainings" / name)
                   if members[0].training else {})
        stages: dict[str, str | None] = {}
        for rule, stage in TRAIN_RULES.items():
            if any(r.jobs.get(rule) == "done" for r in members):
                if stage in records:
                    stages[stage] = records[stage]
            elif step > ((probe_step or 0) if stage == "final" else 0):
                stages[stage] = None  # steps of a stage in flight (or failed): trained
        probe = probe_step / total if total else math.nan  # the probe point as trained
        out.append(Training(
            name=name, runs=[r.run for r in members], fraction=fraction,
            decisions={r.run: r.decision for r in members}, probe_fraction=ctx.probe_fraction,
            copied=copied_units(stages, fraction, probe),
            copied_from=sorted({src for src in stages.values() if src}),
            total_steps=float(total) if total else math.nan, stages=stages))
    return out


def _training_row(t) -> dict[str, Any]:
    """One training of the ledger, for the JSON (budget units: its full budget)."""
    return {"training": t.name, "runs": t.runs, "decisions": t.decisions,
            "fraction": t.fraction, "spent": t.spent, "copied": t.copied,
            "copied_from": t.copied_from, "stopped": t.stopped, "saved": t.saved}


def _compute_summary(runs: list[RunStatus], s_step: float | None, ledger: list):
    """Compute spent and still planned (1 budget unit = one training's full budget):
    (compute dict, seconds per budget, probe evaluations and expected small evaluations
    still to run). Spent is counted per training (:func:`training_ledger`): runs that share a
    training count it once, a stage copied from an identical training counts 0
    (``spent_budgets``, ``spent_device_h``: until issue #12's per-training count, per run);
    ``trainings``: the exhaustive budget in units; ``copied_budgets``, ``n_copied``."""
    from physweep.report.stopping import ledger_totals

    totals = ledger_totals(ledger)
    speed = {r.training or r.run: r.s_per_step for r in runs if r.s_per_step}
    spent = totals.spent if math.isfinite(totals.spent) else 0.0
    spent_s = sum(t.spent * t.total_steps * (speed.get(t.name) or s_step or 0) for t in ledger
                  if math.isfinite(t.spent) and math.isfinite(t.total_steps))
    non_base = [r for r in runs if not r.baseline and r.decision in ("continue", "stop",
                                                                       "diverged")]
    cont = sum(1 for r in non_base if r.decision == "continue")
    p_continue = cont / len(non_base) if non_base else 1.0
    committed = expected = upper = 0.0  # budget units still to train
    n_probe_evals = n_small_evals = 0.0
    for r in runs:
        if not r.total_steps or r.state == "failed":
            continue
        rest = (r.total_steps - (r.probe_step or 0)) / r.total_steps
        if r.state in ("planned", "queued", "training probe"):
            done = (r.step or 0) if r.state == "training probe" else 0
            committed += max(0, (r.probe_step or 0) - done) / r.total_steps
            p = 1.0 if r.baseline else p_continue
            expected += p * rest
            upper += rest
            n_probe_evals += 1
            n_small_evals += p
        elif r.state == "probe done":
            p = 1.0 if r.baseline else p_continue
            expected += p * rest
            upper += rest
            n_probe_evals += 0 if r.jobs.get("eval_probe") == "done" else 1
            n_small_evals += p
        elif r.state in ("decided continue", "training to end"):
            committed += max(0, r.total_steps - (r.step or r.probe_step or 0)) / r.total_steps
            n_small_evals += 0 if r.jobs.get("small_eval") == "done" else 1
    full_total = sum(r.total_steps for r in runs if r.total_steps)
    s_budget = (statistics.median([r.total_steps for r in runs if r.total_steps]) * s_step
                if s_step and full_total else None)
    planned = committed + expected
    compute = {"spent_budgets": spent, "spent_device_h": spent_s / 3600,
               "trainings": totals.budget, "copied_budgets": totals.copied,
               "n_copied": totals.n_copied,
               "planned_budgets": planned, "planned_budgets_max": committed + upper,
               "planned_device_h": planned * s_budget / 3600 if s_budget else None,
               "planned_device_h_max": (committed + upper) * s_budget / 3600 if s_budget else None,
               "p_continue": p_continue, "continue_basis": f"{cont} of {len(non_base)}"}
    return compute, s_budget, n_probe_evals, n_small_evals


def _eval_seconds(ctx: Context, runs: list[RunStatus], promoted: set[str],
                  promotion_k: int | None, ranking, n_probe_evals: float, n_small_evals: float):
    """Evaluations still to run, at this round's measured job times: (median seconds per
    evaluation rule, seconds left)."""
    rdir = ctx.results / ctx.round
    bench = {rule: _median([s for s in (_benchmark_s(p) for p in (
        ctx.results / "benchmarks" / ctx.round).glob(f"*/{rule}.tsv")) if s is not None])
        for rule in EVAL_RULES} if (ctx.results / "benchmarks" / ctx.round).is_dir() else {}
    k = promotion_k or 0
    n_full = (sum(1 for r in runs if r.run in promoted and r.jobs.get("full_eval") != "done")
              if (rdir / "promoted.json").exists() else (k if ranking is None else 0))
    eval_s = ((bench.get("eval_probe") or 0) * n_probe_evals
              + (bench.get("small_eval") or 0) * n_small_evals
              + (bench.get("full_eval") or 0) * n_full)
    return bench, eval_s


def _best_so_far(runs: list[RunStatus]) -> dict[str, Any] | None:
    """The best small eval so far (a run's small eval; probe evals when none has one yet)."""
    best = None
    scored = [r for r in runs if r.small_score is not None]
    if scored:
        b = min(scored, key=lambda r: (not r.gates_pass, r.small_score))
        best = {"run": b.run, "score": b.small_score, "gates_pass": b.gates_pass,
                "eval": "small"}
        low = min(scored, key=lambda r: r.small_score)
        if low is not b:
            best["lowest"] = {"run": low.run, "score": low.small_score,
                              "gates_pass": low.gates_pass}
    else:
        probed = [r for r in runs if r.probe_score is not None]
        if probed:
            b = min(probed, key=lambda r: r.probe_score)
            best = {"run": b.run, "score": b.probe_score, "gates_pass": None, "eval": "probe"}
    return best


def _round_winner(rdir: Path) -> dict[str, Any] | None:
    """The round's winner from ``winners.yaml``, when written."""
    winners = None
    try:
        w = load_yaml((rdir / "winners.yaml").read_text())
        if isinstance(w, dict):
            winners = {"run": (w.get("best") or {}).get("run"), "reason": w.get("reason")}
    except (OSError, ValueError):
        pass
    return winners


def _round_eta(ctx: Context, runs: list[RunStatus], ranking, planned: float,
               s_budget: float | None, eval_s: float) -> dict[str, Any]:
    """The ETA of the round: training and evaluation left over the jobs running now."""
    running = sum(1 for r in runs if r.job and r.job.endswith("running"))
    finished = ranking is not None and all(r.state in ("ranked", "diverged") for r in runs) \
        and not running
    train_left_s = planned * s_budget if s_budget else None
    left_s = (train_left_s or 0) + eval_s if train_left_s is not None else None
    parallel = running or (1 if ctx.snakemake.running else 0)
    if finished:
        return {"eta_s": 0.0, "text": "finished"}
    if left_s is None:
        return {"eta_s": None, "text": "unknown (no training speed measured yet)"}
    if not parallel:
        return {"eta_s": None, "left_device_s": left_s,
                "text": "nothing running (no Snakemake process in this directory"
                        + (" and no SLURM job" if ctx.squeue is not None else "") + ")"}
    return {"eta_s": left_s / parallel, "left_device_s": left_s, "parallel": parallel,
            "text": None}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return _jsonable(obj.item())
    return obj


# ----------------------------------------------------------------------------- text


def duration(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "?"
    s = max(0, int(round(s)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _num(x: Any, fmt: str = ".4g") -> str:
    return format(x, fmt) if _is_num(x) else "-"


def _short(path: str) -> str:
    """A path relative to the current directory when it is below it."""
    try:
        rel = str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return path
    return rel if rel != "." else path


def format_status(st: dict[str, Any]) -> str:
    out = _summary_lines(st)
    out.append("")
    out += _run_table(st)
    out += _problem_lines(st)
    return "\n".join(out)


def _summary_lines(st: dict[str, Any]) -> list[str]:
    """The round's header: where it runs, runs by state, decisions, compute, best, ETA."""
    s = st["summary"]
    out = [f"{st['round']}: {st['title']}  (objective {st['objective']}, preset "
           f"{st['preset']}; {_short(st['results'])})"]
    where = "Snakemake running here" if st["snakemake_running"] else \
        "no Snakemake process running here"
    out.append(f"{where}; squeue: {'yes' if st['squeue'] else 'not available'}")
    states = ", ".join(f"{n} {k}" for k, n in s["by_state"].items())
    out.append(f"runs: {s['runs']} — {states}")
    d = s["decisions"]
    line = (f"decisions: {d['continue']} continue, {d['stop']} stop, {d['diverged']} diverged, "
            f"{d['baseline']} baseline, {d['undecided']} to decide")
    if "continue_below" in d:
        line += (f"; a run continues when its probe {st['objective']} < "
                 f"{d['continue_below']:.5g} (baseline {d['baseline_mean']:.5g} − "
                 f"{d['sigma_factor']:g}σ, σ = {d['sigma']:.3g} from {d['sigma_method']})")
    elif "baseline_mean" not in d:
        line += "; the baseline band is not known yet (baseline probes running)"
    out.append(line)
    c = s["compute"]
    line = (f"compute: spent {c['spent_budgets']:.2f} budgets ({c['spent_device_h']:.3f} "
            f"device-h); still planned {c['planned_budgets']:.2f}")
    if c["planned_budgets_max"] - c["planned_budgets"] > 1e-9:
        line += f" (≤ {c['planned_budgets_max']:.2f} if every undecided run continues)"
    if c["planned_device_h"] is not None:
        line += f" = {c['planned_device_h']:.3f} device-h"
    line += (f"; early stopping saved {d['saved_budgets']:.2f} budgets"
             + (f" ({d['saved_trainings']} training(s) stopped at the probe)"
                if d["saved_trainings"] else ""))
    out.append(line + f"  [1 budget = one training's full budget; {c['trainings']} "
               f"training(s) for {s['runs']} runs]")
    if c["n_copied"]:
        out.append(f"  {c['n_copied']} training(s) copied from identical ones "
                   f"({c['copied_budgets']:.2f} budgets, counted 0)")
    if d["stopped_sharing"]:
        out.append("  stopped, but their training goes on (or may) for another run, nothing "
                   "saved: " + ", ".join(d["stopped_sharing"]))
    b = s["best"]
    if b:
        gate = {True: "gates pass", False: "fails a gate", None: "gates not checked yet"}
        out.append(f"best {b['eval']} eval so far: {b['score']:.5g} {b['run']} "
                   f"({gate[b['gates_pass']]})"
                   + (f"; lowest {b['lowest']['score']:.5g} {b['lowest']['run']} fails a gate"
                      if b.get("lowest") else "")
                   + (f"; winner: {s['winner']['run']}" if s.get("winner") else ""))
    out.append(_eta_line(s["eta"], c))
    if s.get("other_jobs"):
        out.append("other jobs in flight: " + ", ".join(
            f"{j['rule']} ({j['output']}"
            + (f", {duration(st['time'] - j['since'])}" if j.get("since") else "") + ")"
            for j in s["other_jobs"]))
    return out


def _eta_line(e: dict[str, Any], c: dict[str, Any]) -> str:
    """The round's ETA line, with what it assumes."""
    if e["text"]:
        return (f"ETA: {e['text']}"
                + (f"; {duration(e['left_device_s'])} of device time left"
                   if e.get("left_device_s") else ""))
    basis = (f"undecided runs continue at the rate so far, {c['continue_basis']}"
             if not c["continue_basis"].endswith(" of 0")
             else "every undecided run continues (no decision yet)")
    return (f"ETA: ~{duration(e['eta_s'])} ({duration(e['left_device_s'])} of training "
            f"and evaluation left over {e['parallel']} job(s) running now; assumes "
            f"{basis})"
            + (f"; {e['excludes_failed']} failed run(s) not counted"
               if e["excludes_failed"] else ""))


def _run_table(st: dict[str, Any]) -> list[str]:
    """One line per run: state, job in flight, training progress, ETA, decision, scores."""
    head = ["run", "state", "job", "step", "loss", "tok/s", "eta", "decision", "probe",
            "small"]
    rows = []
    for r in st["runs"]:
        job = r["job"] or ""
        if r.get("job_since") and job.endswith(("running", "queued")):
            job += f" {duration(st['time'] - r['job_since'])}"
        if r["slurm_jobid"]:
            job += f" [slurm {r['slurm_jobid']} {r['slurm_state'] or '?'}]"
        step = (f"{r['step']}/{r['total_steps']}" if r["step"] is not None and r["total_steps"]
                else f"-/{r['total_steps']}" if r["total_steps"] else "-")
        eta = f"{duration(r['eta_s'])}→{r['eta_to']}" if r["eta_to"] else "-"
        stale = (r["state"] in ("training probe", "training to end") and r["progress_age_s"]
                 and r["progress_age_s"] > 300)
        rows.append([r["run"], r["state"] + (" (stale?)" if stale else ""), job, step,
                     _num(r["loss"]), _num(r["tokens_per_s"], ".0f"), eta,
                     r["decision"] or "-", _num(r["probe_score"]), _num(r["small_score"])])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
    for row in rows:
        out.append("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip())
    return out


def _problem_lines(st: dict[str, Any]) -> list[str]:
    """Left-over outputs Snakemake will redo, and each failed job with its log and rerun."""
    out = []
    stale = [f"{r['run']}: {', '.join(r['stale'])}" for r in st["runs"] if r["stale"]]
    if stale:
        out += ["", "outputs older than their inputs (left from an earlier attempt; Snakemake "
                "redoes these jobs and what follows on its next run): " + "; ".join(stale)]
    for r in st["runs"]:
        f = r["failed"]
        if not f:
            continue
        out += ["", f"FAILED {r['run']}: {f['rule']} — {f['why']}; log {_short(f['log'])}"
                + (", last lines:" if f["last_lines"] else " (empty)")]
        out += [f"  | {line}" for line in f["last_lines"]]
        out.append(f"  rerun: {f['rerun']}")
    return out


def watch(render, interval: float = 5.0, count: int | None = None, console=None) -> None:
    """Redraw ``render()`` (text) in place every ``interval`` seconds until Ctrl-C (or
    ``count`` redraws): rich's Live display on a terminal; plain ANSI redraws without rich; one
    frame after the other when the output is not a terminal (a file, a pipe)."""
    import sys

    try:
        from rich.live import Live
        from rich.text import Text
    except ImportError:  # rich not installed
        Live = None  # noqa: N806
    tty = console is not None or sys.stdout.isatty()
    n = 0
    try:
        if Live is not None and tty:
            kwargs = {"console": console} if console is not None else {}
            with Live(Text(render()), auto_refresh=False, **kwargs) as live:
                n = 1
                while count is None or n < count:
                    time.sleep(interval)
                    live.update(Text(render()), refresh=True)
                    n += 1
            return
        while count is None or n < count:
            print(("\x1b[H\x1b[2J" if tty else ("\n" if n else "")) + render(), flush=True)
            n += 1
            if count is None or n < count:
                time.sleep(interval)
    except KeyboardInterrupt:
        pass
