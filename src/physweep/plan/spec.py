"""Planned run -> JSON-able template (Snakemake params) -> run spec (typed-config dicts).

The template carries everything a job needs (nominal values, pending winner sources, the preset's
size rules and fixed settings); ``build_spec`` resolves pending values from winner files and
maps nominal values to effective ones (``physweep.plan.sizes.effective_value``). Which section
and field a knob sets is its declaration (``x-physweep.sets`` in knobs.schema.yaml).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from physweep.io import load_yaml
from physweep.plan import knobs as K
from physweep.plan.config import WorkflowConfig
from physweep.plan.errors import ConfigError
from physweep.plan.round import Pending, PlannedRun, RoundPlan
from physweep.plan.sizes import effective_batch, effective_size, effective_value, effective_values

# the knobs of each run-spec section, derived from their declarations (x-physweep.sets)
MODEL_KNOBS = K.section_knobs("model")
CORRECTOR_KNOBS = K.section_knobs("corrector")
TRAIN_KNOBS = K.section_knobs("train")


def portable_path(path: str | Path, root: str | Path, cwd: str | Path | None = None) -> str:
    """``path`` as it may appear in a template or a rule's params: relative to the workflow
    ``root`` when it lies there, else relative to the working directory ``cwd`` (default: the
    current one), else unchanged. Snakemake reruns a job whose params changed, so an absolute
    path in a param would rerun everything after the checkout (or the working directory) moved.
    """
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    for base in (Path(root), Path(cwd) if cwd is not None else Path.cwd()):
        try:
            return p.relative_to(Path(base).absolute()).as_posix()
        except ValueError:
            continue
    return p.as_posix()
#: knobs the predicted training memory depends on (physweep.plan.memory)
MEMORY_KNOBS = (*MODEL_KNOBS, "max_horizon", "steps", "inverse_encode", "inverse_decode",
                "freeze_bottom_layers_on_expand")


def template(wcfg: WorkflowConfig, plan: RoundPlan, run: PlannedRun) -> dict[str, Any]:
    """Everything one run's jobs need, JSON-able, with pending values kept symbolic."""
    comp = wcfg.config["compute"]
    return {
        "run": run.name,
        "round": plan.round,
        "block": run.block,
        "blocks": list(run.blocks),
        "seed": run.seed,
        "is_baseline": run.is_baseline,
        "nominal": {k: ({"pending": v.source} if isinstance(v, Pending) else v)
                    for k, v in run.values.items()},
        "batch_tokens": run.batch_tokens,
        "batch_rule": run.batch_rule,
        "ref_batch_tokens": int(comp["ref_batch_tokens"]),
        "budget_steps": int(comp["budget_steps"]),
        "preset_name": wcfg.preset_name,
        "preset_file": portable_path(wcfg.preset_file, wcfg.root),  # for messages only
        "preset": {k: wcfg.preset[k] for k in ("sizes", "model", "corrector", "train")},
        "memory": memory_section(wcfg.preset),
    }


def memory_section(preset: dict[str, Any]) -> dict[str, Any]:
    """What the memory prediction needs beyond the run spec: the data's grid and snapshots
    (the preset's ``data``) and the preset's ``device_memory_gb`` (None: no fitting)."""
    from physweep.configs import from_dict
    from physweep.physics.dataset_config import DatasetConfig

    data = from_dict(DatasetConfig, dict(preset["data"]))
    return {"grid": [data.ny, data.nx], "n_time": data.n_snapshots,
            "device_memory_gb": preset.get("device_memory_gb")}


def fit_memory(model: dict[str, Any], corrector_steps: int, train: dict[str, Any],
               memory: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run spec's ``train`` section with ``micro_batch`` lowered where the run's predicted
    peak memory would not fit the preset's device (gradient accumulation: ``batch_tokens`` is
    unchanged), and the record of the prediction (``physweep.plan.memory``)."""
    from physweep.plan.memory import MEMORY_HEADROOM, fit_micro_batch, training_memory

    grid, n_time, gb = tuple(memory["grid"]), memory["n_time"], memory.get("device_memory_gb")
    if gb:
        nominal, fitted, fits = fit_micro_batch(model, train, grid, gb, corrector_steps, n_time)
    else:
        nominal = fitted = training_memory(model, train, grid, corrector_steps, n_time)
        fits = True
    record = {"predicted_gib": round(fitted.gib, 3), "micro_batch": fitted.micro_batch,
              "nominal_gib": round(nominal.gib, 3), "nominal_micro_batch": nominal.micro_batch,
              "fits": fits, "device_memory_gb": gb,
              "budget_gib": MEMORY_HEADROOM * gb if gb else None,
              "precision": fitted.precision, "horizon": fitted.horizon,
              "parts_gib": {k: round(v / 2**30, 3) for k, v in fitted.parts.items()}}
    return dict(train, micro_batch=fitted.micro_batch), record


#: values assumed for memory knobs still waiting for a winner: the costliest ones (inverse
#: losses and corrector on, nothing frozen), so the plan's figure is an upper bound
MEMORY_WORST_CASE = {"inverse_encode": 1.0, "inverse_decode": 1.0, "steps": 2,
                     "freeze_bottom_layers_on_expand": False}


def planned_memory(wcfg: WorkflowConfig, run: PlannedRun) -> dict[str, Any] | None:
    """``fit_memory``'s record for a planned run (what ``build_spec`` will decide). While a
    size knob (or the horizon) waits for a winner: None; while only the inverse-loss weights,
    the corrector steps or the freeze flag do, their costliest values are assumed and listed
    under ``assumed``."""
    values = dict(run.values)
    assumed = [k for k in MEMORY_KNOBS if isinstance(values[k], Pending)]
    if any(k not in MEMORY_WORST_CASE for k in assumed):
        return None
    values.update({k: MEMORY_WORST_CASE[k] for k in assumed})
    preset, pfile = wcfg.preset, str(wcfg.preset_file)
    model = model_section(preset, values, pfile, run.name)
    train = dict(preset["train"])
    train.update({k: values[k] for k in ("inverse_encode", "inverse_decode",
                                          "freeze_bottom_layers_on_expand")})
    train.update(batch_tokens=effective_batch(preset, run.batch_tokens, pfile),
                 max_horizon=effective_size(preset, "max_horizon", values["max_horizon"], pfile))
    record = fit_memory(model, values["steps"], train, memory_section(preset))[1]
    return dict(record, assumed=assumed)


def winner_knobs(path: str | Path) -> dict[str, Any]:
    """Knob values of the best run recorded in a round or block winner file."""
    data = load_yaml(Path(path).read_text())
    return dict(data["best"]["knobs"])


def resolve_nominal(tpl: dict[str, Any], winners: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for k, v in tpl["nominal"].items():
        if isinstance(v, dict) and "pending" in v:
            src = v["pending"]
            if src not in winners:
                raise ValueError(f"run {tpl['run']}: knob {k} needs the winner of {src}, "
                                 f"which was not given (have {sorted(winners)})")
            out[k] = winners[src][k]
        else:
            out[k] = v
    return out


def model_section(preset: dict[str, Any], nominal: dict[str, Any], preset_file: str,
                  run: str = "baseline") -> dict[str, Any]:
    """The run spec's ``model`` section (SurrogateConfig fields): the nominal model knobs mapped
    to the preset's effective sizes, plus the preset's fixed ``model`` settings."""
    eff = {k: effective_value(preset, k, nominal[k], preset_file=preset_file) for k in MODEL_KNOBS}
    model = section(preset, "model", eff)
    if model["model_dim"] % model["heads"]:
        raise ConfigError(preset_file, "model.heads", f"{model['heads']} heads do not divide "
                          f"model_dim {model['model_dim']} (run {run})",
                          "a divisor of every effective model_dim")
    return model


def section(preset: dict[str, Any], name: str, effective: dict[str, Any]) -> dict[str, Any]:
    """Run-spec section ``name``: the declared field of each of its knobs set to the knob's
    effective value, then the preset's fixed settings of that section (which may not set a
    knob's field: ``physweep.plan.config.check_preset_knobs``)."""
    out = {K.REGISTRY[k].field: effective[k] for k in K.section_knobs(name)}
    out.update(preset[name])
    return out


def preset_model(wcfg: WorkflowConfig, **nominal: Any) -> dict[str, Any]:
    """The surrogate's config (SurrogateConfig fields) at the active preset for the default
    knobs (config ``knobs``), with ``nominal`` knob overrides: what a baseline run trains."""
    knobs = {**wcfg.config["knobs"], **nominal}
    return model_section(wcfg.preset, knobs, str(wcfg.preset_file))


def build_spec(tpl: dict[str, Any], winners: dict[str, dict[str, Any]] | None = None
               ) -> dict[str, Any]:
    """Resolve a template into the run spec of docs/architecture.md."""
    nominal = resolve_nominal(tpl, winners or {})
    preset, pfile = tpl["preset"], tpl["preset_file"]
    compute = {"ref_batch_tokens": tpl["ref_batch_tokens"], "budget_steps": tpl["budget_steps"]}
    # lr: linear in the run's batch_tokens; ema: the same window as a fraction of training
    eff = effective_values(preset, nominal, compute, tpl["batch_tokens"], pfile)
    batch = effective_batch(preset, tpl["batch_tokens"], pfile)
    ref_batch = effective_batch(preset, tpl["ref_batch_tokens"], pfile)
    budget_steps = effective_size(preset, "budget_steps", tpl["budget_steps"], pfile)

    model = model_section(preset, nominal, pfile, tpl["run"])
    corrector = section(preset, "corrector", eff)
    train = section(preset, "train", eff)
    train.update(batch_tokens=batch, budget_tokens=budget_steps * ref_batch, seed=tpl["seed"])
    memory = None
    if "memory" in tpl:  # micro-batches split where the run would not fit the device
        train, memory = fit_memory(model, corrector["steps"], train, tpl["memory"])
    return {
        "run": tpl["run"], "round": tpl["round"], "block": tpl["block"],
        "preset": tpl["preset_name"], "seed": tpl["seed"],
        "model": model, "corrector": corrector, "train": train,
        "nominal": nominal,
        "effective": {k: eff[k] for k in K.KNOBS if K.REGISTRY[k].effective != "none"}
        | {"batch_tokens": batch, "steps_total": budget_steps * ref_batch // batch},
        "memory": memory,
    }


# ---- training identity: runs that differ only in what training does not read share one ------

#: run-spec fields the trainer never reads (only a rollout of a trained run does): the
#: corrector's cadence and guidance step and the ensemble size. Proven, field by field, by
#: tests/train/test_training_identity.py (training twice with another value is bit for bit the
#: same); the knobs' declared stage is cross-checked against this list there too.
EVALUATION_FIELDS: dict[str, tuple[str, ...]] = {
    "corrector": ("cadence", "guidance", "ensemble_members"),
}
#: TrainConfig fields that say where a run executes (physweep.train.loop.MACHINE_FIELDS)
_MACHINE_FIELDS = ("device", "threads")


def training_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """What training reads of a run spec: model kind, model, corrector without its
    evaluation-only fields, train without the machine, seed. Two runs whose training specs are
    equal train bit for bit the same weights (same data, same code)."""
    out: dict[str, Any] = {"model_kind": spec.get("model_kind", "upt")}
    for name in ("model", "corrector", "train"):
        drop = EVALUATION_FIELDS.get(name, ()) + (_MACHINE_FIELDS if name == "train" else ())
        out[name] = {k: v for k, v in spec[name].items() if k not in drop}
    out["seed"] = spec["seed"]
    return json.loads(json.dumps(out, sort_keys=True, default=str))


def evaluation_settings(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The run-spec fields ``training_spec`` drops (read only when a trained run is rolled out):
    what an evaluation of a shared training takes from the evaluated run."""
    return {sec: {f: spec[sec][f] for f in fields if f in spec[sec]}
            for sec, fields in EVALUATION_FIELDS.items()}


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def training_identity(spec: dict[str, Any]) -> str:
    """12 hex digits naming a resolved training: the hash of its canonical training spec."""
    return _digest(training_spec(spec))


def training_knobs() -> list[str]:
    """The knobs whose field training reads (derived from ``EVALUATION_FIELDS``, not from the
    declared stage)."""
    return [k for k in K.KNOBS
            if K.REGISTRY[k].field not in EVALUATION_FIELDS.get(K.REGISTRY[k].section, ())]


def training_template(tpl: dict[str, Any]) -> dict[str, Any]:
    """A run template reduced to what its training depends on: no run / block names, and the
    knobs training does not read at their defaults (so a pending evaluation-only value needs no
    winner). ``build_spec`` of it gives the run's training spec."""
    keep = set(training_knobs())
    out = {k: v for k, v in tpl.items() if k not in ("run", "block", "blocks", "is_baseline")}
    out["nominal"] = {k: (v if k in keep else K.REGISTRY[k].default)
                      for k, v in tpl["nominal"].items()}
    out.update(run="training", block="training")
    return out


def is_pending(tpl: dict[str, Any]) -> bool:
    return any(isinstance(v, dict) and "pending" in v for v in tpl["nominal"].values())


def training_key(tpl: dict[str, Any]) -> str:
    """The name of a run's training directory, known at plan time: the training identity of
    its resolved spec when every value it trains with is known; when some wait for an earlier
    winner, the hash of its training template (runs that take the same values from the same
    winners and differ only in evaluation-only knobs still share one training)."""
    ttpl = training_template(tpl)
    if is_pending(ttpl):
        # preset_file is for messages only: not part of what is trained
        return _digest({"pending": {k: v for k, v in ttpl.items() if k != "preset_file"}})
    return training_identity(build_spec(ttpl))
