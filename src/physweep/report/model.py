"""The results of a round, read once and typed: what the round report and the index page show.

Everything a report needs is loaded here from the files physweep itself wrote -- ``ranking.csv``
(select/rank.py), the decisions, the training logs, the eval files, ``winners.yaml`` and
``plan.json`` -- and nothing is re-derived from the machine that builds the report: the hardware
is what each training job recorded in its log (``hardware``, ``device``, ``threads``,
``hardware_segments``, see ``physweep.train.loop``).

Names have one spelling: the physics gates are :data:`physweep.physics.gates.GATE_NAMES`, the
ranked metrics :data:`physweep.select.rank.RANK_METRICS` / ``FULL_METRICS``; the ranking's
column names are derived from them (:func:`gate_column`, :func:`gate_pass_column`,
:func:`full_column`), never parsed back out of column names.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from physweep.physics.gates import GATE_NAMES
from physweep.select.rank import FULL_METRICS, RANK_METRICS

__all__ = ["BOOL_COLUMNS", "Decision", "GATE_NAMES", "Hardware", "RoundResults", "RunResult",
           "TrainLog", "full_column", "gate_column", "gate_pass_column", "load_ranking",
           "load_round", "ranking_summary"]

#: ranking.csv columns holding True/False (empty = not applicable)
BOOL_COLUMNS = ("promoted", "winner", "gates_pass", "full_gates_pass")
#: ranking.csv columns besides the metrics, gates, knobs and full-eval results
BASE_COLUMNS = ("run", "block", "seed", "status", "promoted", "winner", "rank", "objective",
                "score", "gates_pass", "train_steps", "compute_fraction")
KNOB_PREFIX = "knob."


def gate_column(gate: str) -> str:
    """ranking.csv column of a gate's measured value (worst over the eval's samples)."""
    return f"gate.{gate}"


def gate_pass_column(gate: str) -> str:
    """ranking.csv column of whether the gate passed on every sample."""
    return f"gate.{gate}.pass"


def full_column(name: str) -> str:
    """ranking.csv column of a full-eval result (promoted runs): ``full_<name>``."""
    return f"full_{name}"


#: the full-eval columns of ranking.csv, in the order rank.py writes them
FULL_COLUMNS = (full_column("rank"), full_column("score"),
                *(full_column(m) for m in FULL_METRICS), full_column("gates_pass"))
GATE_COLUMNS = tuple(c for g in GATE_NAMES for c in (gate_column(g), gate_pass_column(g)))
NUMERIC_COLUMNS = ("rank", "score", "train_steps", "compute_fraction", *RANK_METRICS,
                   *(c for c in FULL_COLUMNS if c != full_column("gates_pass")),
                   *(gate_column(g) for g in GATE_NAMES))


def _bool(value: Any) -> bool | None:
    """A ranking.csv bool as pandas writes it (``True``/``False``, empty when not applicable)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return {"true": True, "false": False, "1": True, "0": False, "1.0": True,
            "0.0": False}.get(str(value).strip().lower())


def num(value: Any) -> float:
    """A float, NaN for anything that is not a number (None, pd.NA, text)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def skill(err, ref):
    """1 - err / ref (NaN where the reference error is not finite and positive), as
    ``evaluate.metrics.skill`` (not imported: it pulls in the model code)."""
    err, ref = np.asarray(err, float), np.asarray(ref, float)
    ok = np.isfinite(ref) & (ref > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, 1.0 - err / np.where(ok, ref, 1.0), np.nan)


def load_ranking(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read ranking.csv: bool columns True/False/None, numeric columns float, ``run`` a
    string, sorted by rank (unranked last) as rank.py writes it."""
    df = pd.read_csv(path, dtype={"run": str})
    for col in (*BOOL_COLUMNS, *(gate_pass_column(g) for g in GATE_NAMES)):
        if col in df.columns:
            df[col] = pd.Series([_bool(v) for v in df[col]], index=df.index, dtype=object)
    for col in NUMERIC_COLUMNS:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    if "skill" not in df.columns and {"nrmse", "nrmse_persistence"} <= set(df.columns):
        df["skill"] = skill(df["nrmse"].to_numpy(float), df["nrmse_persistence"].to_numpy(float))
    if "rank" in df.columns:
        df = df.sort_values("rank", na_position="last", kind="stable").reset_index(drop=True)
    return df


# ----------------------------------------------------------------------------- typed records


@dataclass(frozen=True)
class Gate:
    value: float  # NaN: not measured
    passed: bool | None  # None: not measured


@dataclass
class Decision:
    """A run's early-stopping decision (decision.json)."""

    decision: str | None
    fields: dict[str, Any]  # everything decision.json holds

    @property
    def run_score(self) -> float:
        return num(self.fields.get("run_score"))

    @property
    def probe_fraction(self) -> float:
        return num(self.fields.get("probe_fraction"))

    @property
    def saved_fraction(self) -> float:
        return num(self.fields.get("saved_fraction"))

    @property
    def enabled(self) -> bool:
        """Whether early stopping was on (false: an exhaustive round, every run trained to
        the end). Decision files written before the field existed: on."""
        return self.fields.get("early_stop_enabled", True) is not False

    @property
    def rule_decision(self) -> str | None:
        """What the sigma rule said (in an exhaustive round a run it would stop continues);
        decision files written before the field existed: the decision."""
        return self.fields.get("rule_decision") or self.decision

    def get(self, name: str) -> float:
        return num(self.fields.get(name))


@dataclass(frozen=True)
class Hardware:
    """Where a run trained, as its training job recorded it."""

    hardware: str | None  # e.g. "1x NVIDIA H100 80GB HBM3"; None: not recorded
    device: str | None  # "cpu", "cuda", "cuda:0"
    threads: int | None
    hostname: str | None
    segments: tuple[dict[str, Any], ...] = ()  # one per training segment (resumes)

    @property
    def lines(self) -> list[str]:
        """The hardware of every segment (a run resumed elsewhere has several)."""
        seen = [str(s["hardware"]) for s in self.segments if s.get("hardware")]
        return list(dict.fromkeys(seen or ([self.hardware] if self.hardware else [])))


@dataclass
class TrainLog:
    """A run's train_log.nc: its time series (``ds``) and the attributes the report uses."""

    ds: Any  # xarray.Dataset
    status: str | None
    diverged_step: float
    steps_total: float
    code_version: str | None
    run_spec: dict[str, Any] | None
    hardware: Hardware

    def values(self, name: str) -> np.ndarray | None:
        return values(self.ds, name)

    @property
    def step_time(self) -> float:
        """Median training wall time per step (s), NaN when not logged."""
        v = self.values("step_time_s")
        if v is None:
            return math.nan
        v = v[np.isfinite(v) & (v > 0)]
        return float(np.median(v)) if v.size else math.nan

    @property
    def cpu_only(self) -> bool:
        """Recorded as trained on a CPU without saying so in ``device``: the spec asked for
        the CPU, or the job's torch was a CPU-only build (``+cpu``)."""
        train = (self.run_spec or {}).get("train")
        if isinstance(train, Mapping) and train.get("device") == "cpu":
            return True
        packages = _json_attr(self.ds, "packages")
        torch = str(packages.get("torch", "")) if isinstance(packages, Mapping) else ""
        return torch.endswith("+cpu")

    @property
    def train_seconds(self) -> float:
        v = self.values("step_time_s")
        return math.nan if v is None else float(np.nansum(v[np.isfinite(v)]))


@dataclass
class RunResult:
    """One run: its ranking row (typed), decision, training log and record eval."""

    name: str
    row: dict[str, Any]  # the ranking.csv row, bools and numbers typed
    status: str  # ok | early_stopped | diverged | failed | unknown
    gates: dict[str, Gate]
    decision: Decision | None = None
    log: TrainLog | None = None
    eval: Any = None  # xarray.Dataset of the record eval (full eval for promoted runs)
    #: the stages of the run's training (probe, final) that recorded their identity ->
    #: where the stage was copied from (``reused_from``), None when it was trained
    stages: dict[str, str | None] = field(default_factory=dict)

    def get(self, column: str, default: Any = None) -> Any:
        return self.row.get(column, default)

    @property
    def rank(self) -> float:
        return num(self.row.get("rank"))

    @property
    def block(self) -> Any:
        return self.row.get("block")

    @property
    def promoted(self) -> bool:
        return self.row.get("promoted") is True

    @property
    def winner(self) -> bool:
        return self.row.get("winner") is True

    @property
    def gates_pass(self) -> bool | None:
        return self.row.get("gates_pass")

    @property
    def compute_fraction(self) -> float:
        return num(self.row.get("compute_fraction"))

    @property
    def decided(self) -> str | None:
        return self.decision.decision if self.decision else None

    @property
    def diverged(self) -> bool:
        return self.status == "diverged" or self.decided == "diverged"

    @property
    def early_stopped(self) -> bool:
        return self.status == "early_stopped" or self.decided == "stop"

    @property
    def total_steps(self) -> float:
        """The run's full training budget in steps (log, else train_steps / compute_fraction)."""
        if self.log is not None and math.isfinite(self.log.steps_total) \
                and self.log.steps_total > 0:
            return self.log.steps_total
        steps, frac = num(self.row.get("train_steps")), self.compute_fraction
        return steps / frac if math.isfinite(steps) and math.isfinite(frac) and frac > 0 \
            else math.nan

    @property
    def run_spec(self) -> dict[str, Any] | None:
        """The run's resolved spec: its eval's first (a training shared by several runs logs
        the training spec, without the run's evaluation-time knobs), else its training log's."""
        spec = _json_attr(self.eval, "run_spec") if self.eval is not None else None
        if isinstance(spec, dict):
            return spec
        return self.log.run_spec if self.log is not None else None


@dataclass
class RoundResults:
    """Everything a round report shows, read once; ``problems`` lists unreadable inputs."""

    name: str
    ranking: pd.DataFrame
    runs: dict[str, RunResult]  # in ranking order
    winners_file: dict[str, Any]
    plan: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    decision_order: list[str] = field(default_factory=list)  # as the workflow listed them

    @property
    def names(self) -> list[str]:
        return list(self.runs)

    @property
    def winners(self) -> list[str]:
        listed = [str(w) for w in (self.winners_file.get("winners") or [])]
        return listed or [r.name for r in self.runs.values() if r.winner]

    @property
    def promoted(self) -> list[str]:
        return [r.name for r in self.runs.values() if r.promoted]

    @property
    def objective(self) -> str:
        obj = self.winners_file.get("objective")
        if isinstance(obj, str) and obj.strip() and obj.strip().lower() != "nan":
            return obj
        col = self.ranking["objective"] if "objective" in self.ranking.columns else []
        return next((str(o) for o in col if isinstance(o, str) and o.strip()), "—")

    @property
    def gates(self) -> list[str]:
        """The gates the ranking has, in :data:`GATE_NAMES` order."""
        cols = set(self.ranking.columns)
        return [g for g in GATE_NAMES if {gate_column(g), gate_pass_column(g)} & cols]

    @property
    def knobs(self) -> list[str]:
        """The swept knobs (``knob.<name>`` columns of the ranking)."""
        return [c[len(KNOB_PREFIX):] for c in self.ranking.columns if c.startswith(KNOB_PREFIX)]

    @property
    def training_of(self) -> dict[str, str]:
        """Run -> its training (plan.json's ``training``); a run the plan does not place on a
        training has one of its own, named after the run."""
        listed = {str(r.get("run")): str(r["training"]) for r in (self.plan.get("runs") or [])
                  if isinstance(r, Mapping) and r.get("training")}
        return {name: listed.get(name, name) for name in self.runs}

    @property
    def records_trainings(self) -> bool:
        """Whether plan.json places runs on trainings (older plans do not: one per run)."""
        return any(isinstance(r, Mapping) and r.get("training")
                   for r in self.plan.get("runs") or [])

    @property
    def trainings(self) -> dict[str, list[str]]:
        """Training -> the runs on it, in ranking order."""
        out: dict[str, list[str]] = {}
        for run, training in self.training_of.items():
            out.setdefault(training, []).append(run)
        return out

    @property
    def logs(self) -> dict[str, TrainLog]:
        return {r.name: r.log for r in self.runs.values() if r.log is not None}

    @property
    def evals(self) -> dict[str, Any]:
        return {r.name: r.eval for r in self.runs.values() if r.eval is not None}

    @property
    def decisions(self) -> dict[str, Decision]:
        """The runs' decisions in the order the workflow listed them (the plan's)."""
        order = [*self.decision_order, *(r for r in self.runs if r not in self.decision_order)]
        return {r: self.runs[r].decision for r in order
                if r in self.runs and self.runs[r].decision is not None}

    def hardware(self) -> tuple[list[str], str]:
        """The hardware lines the runs' training jobs recorded, and where they come from."""
        logs = self.logs.values()
        lines = list(dict.fromkeys(h for lg in logs for h in lg.hardware.lines))
        if lines:
            return sorted(lines), "train logs"
        hosts = sorted({lg.hardware.hostname for lg in logs if lg.hardware.hostname})
        if hosts:
            return [f"not recorded; trained on host(s) {', '.join(hosts)}"], "train logs"
        return [], ""

    def devices(self) -> dict[str, int]:
        """"device, N threads" as the training jobs recorded them -> number of train logs."""
        out: dict[str, int] = {}
        for lg in self.logs.values():
            hw = lg.hardware
            if hw.device:
                key = hw.device + (f", {hw.threads} thread(s)" if hw.threads else "")
                out[key] = out.get(key, 0) + 1
        return out

    def hours_unit(self) -> str:
        """GPU-hours or CPU-hours by the devices the logs recorded (else the hardware text,
        else CPU-hours when every log records a CPU-only run)."""
        logs = list(self.logs.values())
        devices = {lg.hardware.device.split(":")[0] for lg in logs if lg.hardware.device}
        if devices:
            return "GPU-hours" if "cuda" in devices else "CPU-hours"
        text = " ".join(h for lg in logs for h in lg.hardware.lines).lower()
        if any(w in text for w in ("nvidia", "gpu", "amd instinct", "radeon", "h100", "a100")):
            return "GPU-hours"
        return "CPU-hours" if text or (logs and all(lg.cpu_only for lg in logs)) \
            else "device-hours"


# ----------------------------------------------------------------------------- reading


def values(ds, name: str) -> np.ndarray | None:
    """A variable of a dataset as floats; None when absent or not numeric."""
    if ds is None or name not in ds.variables:
        return None
    try:
        return np.asarray(ds[name].values, dtype=float)
    except (TypeError, ValueError):
        return None


def _json_attr(ds, name: str) -> Any:
    raw = ds.attrs.get(name) if ds is not None else None
    try:
        return json.loads(raw) if raw else None
    except (TypeError, ValueError):
        return None


def _attr(ds, name: str) -> str | None:
    v = ds.attrs.get(name)
    return None if v is None or str(v) == "" else str(v)


def _train_log(ds) -> TrainLog:
    segs = _json_attr(ds, "hardware_segments")
    threads = num(ds.attrs.get("threads"))
    spec = _json_attr(ds, "run_spec")
    hw = Hardware(hardware=_attr(ds, "hardware"), device=_attr(ds, "device"),
                  threads=int(threads) if math.isfinite(threads) else None,
                  hostname=_attr(ds, "hostname"),
                  segments=tuple(s for s in segs or [] if isinstance(s, Mapping)))
    return TrainLog(ds=ds, status=_attr(ds, "status"), diverged_step=num(ds.attrs.get(
        "diverged_step")), steps_total=num(ds.attrs.get("steps_total")),
        code_version=_attr(ds, "code_version"),
        run_spec=spec if isinstance(spec, dict) else None, hardware=hw)


class _Reader:
    """Reads inputs, collecting the problems met (shown in the report, never fatal)."""

    def __init__(self):
        self.problems: list[str] = []

    def json(self, path: Path | None, what: str) -> Any:
        try:
            return json.loads(Path(path).read_text())
        except (OSError, TypeError, ValueError) as exc:
            self.problems.append(f"{what}: cannot read {path}: {exc}")
            return None

    def yaml(self, path: Path | None, what: str) -> Any:
        try:
            return yaml.safe_load(Path(path).read_text())
        except (OSError, TypeError, yaml.YAMLError) as exc:
            self.problems.append(f"{what}: cannot read {path}: {exc}")
            return None

    def mapping(self, path: Path | None, what: str, kind: str) -> dict[str, Any]:
        data = (self.yaml if kind == "yaml" else self.json)(path, what)
        if data is None:
            return {}
        if not isinstance(data, Mapping):
            self.problems.append(f"{what}: not a mapping")
            return {}
        return dict(data)

    def netcdf(self, path: Path, what: str):
        import xarray as xr

        try:
            with xr.open_dataset(path) as ds:
                return ds.load()
        except Exception as exc:  # noqa: BLE001 - a broken file must not stop the report
            self.problems.append(f"{what}: cannot read {path}: {type(exc).__name__}: {exc}")
            return None


#: a training stage's identity record (physweep.train.shared.IDENTITY_FILE, beside its log)
IDENTITY_FILE = "identity.json"
STAGES = ("probe", "final")


def training_stages(train_log: Path) -> dict[str, str | None]:
    """The stages of the training a run's train log belongs to
    (``trainings/<training>/<stage>/train_log.nc``) that recorded their identity: stage ->
    ``reused_from`` (the training the stage was copied from instead of trained), None when it
    was trained. Empty for a log outside that layout or stages without a record."""
    stage_dir = Path(train_log).parent
    return stage_records(stage_dir.parent) if stage_dir.name in STAGES else {}


def stage_records(training_dir: Path) -> dict[str, str | None]:
    """:func:`training_stages` of the training directory ``trainings/<training>``."""
    out: dict[str, str | None] = {}
    for stage in STAGES:
        try:
            record = json.loads((Path(training_dir) / stage / IDENTITY_FILE).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, Mapping):
            out[stage] = str(record["reused_from"]) if record.get("reused_from") else None
    return out


def _run(row: Mapping[str, Any]) -> RunResult:
    status = row.get("status")
    status = "unknown" if status is None or (isinstance(status, float) and math.isnan(status)) \
        else str(status)
    gates = {g: Gate(num(row.get(gate_column(g))), row.get(gate_pass_column(g)))
             for g in GATE_NAMES}
    return RunResult(name=str(row["run"]), row=dict(row), status=status, gates=gates)


def load_round(round_name: str, ranking_csv: Path, decisions: Mapping[str, Path],
               train_logs: Mapping[str, Path], eval_files: Mapping[str, Path],
               winners_yaml: Path | None, plan_json: Path | None) -> RoundResults:
    """Read a round's results. Only the ranking is required; any other unreadable input is
    recorded in ``problems``. ``eval_files`` are the runs' record evals (full eval for the
    promoted runs, else the small or probe eval). Beside each train log in the workflow's
    layout (``trainings/<training>/<stage>/``) the training's stage identity records are read
    (:func:`training_stages`): a stage copied from an identical training was not trained."""
    rd = _Reader()
    df = load_ranking(ranking_csv)
    runs = {r.name: r for r in (_run(row) for row in df.to_dict("records"))}
    for name, path in decisions.items():
        data = rd.json(path, f"decision of {name}")
        if isinstance(data, Mapping) and name in runs:
            runs[name].decision = Decision(decision=data.get("decision"), fields=dict(data))
    for name, path in train_logs.items():
        ds = rd.netcdf(Path(path), f"train log of {name}")
        if ds is not None and name in runs:
            runs[name].log = _train_log(ds)
        if name in runs:
            runs[name].stages = training_stages(Path(path))
    for name, path in eval_files.items():
        ds = rd.netcdf(Path(path), f"eval of {name}")
        if name in runs:
            runs[name].eval = ds
    winners = rd.mapping(winners_yaml, "winners", "yaml")
    plan = rd.mapping(plan_json, "plan", "json")
    return RoundResults(name=round_name, ranking=df, runs=runs, winners_file=winners,
                        plan=plan, problems=rd.problems, decision_order=list(decisions))


# ----------------------------------------------------------------------------- index summary


@dataclass
class RankingSummary:
    """What the index page takes from a round's ranking.csv (and the plan.json, decisions and
    stage identity records beside it): compute counted per training, as the round report
    counts it (:func:`physweep.report.stopping.compute_totals`)."""

    winner: dict[str, Any] | None = None  # the winner's row
    columns: set[str] = field(default_factory=set)
    n_runs: int = 0
    n_trainings: int = 0  # budget units of the exhaustive budget (every training to the end)
    used: float = math.nan  # budget units trained (a copied training counts 0)
    saved: float = math.nan  # budget units saved by early stopping
    steps_used: float = math.nan
    steps_saved: float = math.nan
    n_stopped: int = 0  # trainings stopped at the probe
    n_copied: int = 0  # trainings with a stage copied from an identical training
    per_run: bool = False  # plan.json records no trainings: one training per run
    problem: str | None = None


#: a run's decision as ranking.csv's status says it (rank.py), when its decision.json is gone
STATUS_DECISIONS = {"early_stopped": "stop", "diverged": "diverged", "ok": "continue"}


def _ranking_round(path: Path, df: pd.DataFrame, runs: list[RunResult]) -> tuple[
        RoundResults, bool]:
    """The ranking with what lies beside it in ``results/<round>/``: plan.json (the runs'
    trainings; missing or without ``training`` fields: one training per run), each run's
    ``runs/<run>/decision.json`` (missing: the decision its ranking status implies) and the
    trainings' stage identity records. Also whether every run's decision is known."""
    root = Path(path).parent
    plan_json = root / "plan.json"
    plan = _Reader().mapping(plan_json, "plan", "json") if plan_json.exists() else {}
    res = RoundResults(name=root.name, ranking=df, runs={r.name: r for r in runs},
                       winners_file={}, plan=plan)
    known = True
    for name, run in res.runs.items():
        try:
            data = json.loads((root / "runs" / name / "decision.json").read_text())
        except (OSError, ValueError):
            data = None
        if not isinstance(data, Mapping):
            data = {"decision": STATUS_DECISIONS.get(run.status)}
            known = known and data["decision"] is not None
        run.decision = Decision(decision=data.get("decision"), fields=dict(data))
    for training, names in res.trainings.items():
        stages = stage_records(root / "trainings" / training) if res.records_trainings else {}
        for name in names:
            res.runs[name].stages = stages
    return res, known


def _compute_summary(out: RankingSummary, res: RoundResults, decided: bool) -> None:
    from physweep.report.stopping import compute_totals  # stopping imports this module

    if not any(math.isfinite(r.compute_fraction) for r in res.runs.values()):
        return
    c = compute_totals(res)
    out.n_trainings, out.used, out.n_copied = c.budget, c.spent, c.n_copied
    out.n_stopped, out.per_run = c.n_stopped, not res.records_trainings
    out.steps_used = c.steps_spent
    if decided:
        out.saved, out.steps_saved = c.saved, c.steps_saved


def ranking_summary(path: Path | None, winners: list[str]) -> RankingSummary:
    """The index page's view of one round's ranking.csv (read with :func:`load_ranking`)."""
    if path is None:
        return RankingSummary()
    if not Path(path).exists():
        return RankingSummary(problem="no ranking.csv yet")
    try:
        df = load_ranking(path)
    except (OSError, ValueError) as exc:
        return RankingSummary(problem=f"cannot read {path}: {exc}")
    out = RankingSummary(columns=set(df.columns), n_runs=len(df))
    runs = [_run(row) for row in df.to_dict("records")] if "run" in df.columns else []
    out.winner = next((r.row for r in runs if r.winner), None)
    if out.winner is None and winners:
        out.winner = next((r.row for r in runs if r.name == str(winners[0])), None)
    if "compute_fraction" in df.columns and runs:
        _compute_summary(out, *_ranking_round(Path(path), df, runs))
    return out
