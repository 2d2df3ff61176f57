# Config validation, the plan, wildcard constraints and named input functions.
# Everything worth a unit test lives in physweep.plan / physweep.select; this file only asks.
import json
import sys

from physweep.plan.config import load_workflow_config
from physweep.plan.sizes import preset_resource
from physweep.plan.errors import ConfigError, ConfigErrors, UnknownRunError
from physweep.plan.table import plan_records
from physweep.plan.workflow import Workflow, rerun_hint

# `--config` reads only True/False as booleans: let the GPU switch be written use_gpu=false or 0
if str(config.get("use_gpu")).lower() in ("false", "0", "no", "true", "1", "yes"):
    config["use_gpu"] = str(config["use_gpu"]).lower() in ("true", "1", "yes")

try:
    WCFG = load_workflow_config(config, root=workflow.basedir)
    WF = Workflow(WCFG)
except (ConfigError, ConfigErrors) as _exc:
    sys.exit(f"physweep: config error (nothing was run):\n{_exc}")

for _warning in WCFG.warnings:  # broken round files: refused only when asked for
    print(f"physweep: warning: {_warning}", file=sys.stderr)

R = WF.results
PRESET = WCFG.preset
DATA = f"{R}/data/{WF.dataset}"
REF = f"{R}/reference/{WF.dataset}"  # the reference model, trained once per dataset
RUN = f"{R}/{{round}}/runs/{{run}}"
LOGS = f"{R}/logs/{{round}}/{{run}}"
BENCH = f"{R}/benchmarks/{{round}}/{{run}}"
TRAINING = f"{R}/{{round}}/trainings/{{training}}"  # shared by the runs of one training spec
TLOGS = f"{R}/logs/{{round}}/trainings/{{training}}"
TBENCH = f"{R}/benchmarks/{{round}}/trainings/{{training}}"


wildcard_constraints:
    round=WF.round_regex,
    run=WF.run_regex,
    block=WF.block_regex,
    dataset=r"[A-Za-z0-9_-]+",
    suite=r"small|full",
    training=r"[0-9a-f]{12}",


def res(kind, key):
    """Per-rule job resources from the active preset, defaults in its schema (profiles may
    override)."""
    return preset_resource(PRESET, kind, key)


def drop_gpu_requests(rules_):
    """use_gpu=false: every rule requests 0 GPUs (gpu=0, no gpu_model, no gpu in gres); applied
    after all rules are defined, so it also overrides the profile's set-resources."""
    for r in rules_:
        r.resources["gpu"] = 0
        if "gpu_model" in r.resources:
            r.resources["gpu_model"] = None
        gres = r.resources["gres"].raw if "gres" in r.resources else None
        if isinstance(gres, str) and "gpu" in gres:
            kept = ",".join(g for g in gres.split(",") if not g.strip().startswith("gpu"))
            r.resources["gres"] = kept or None


def executor_is_slurm(workflow):
    plugin = workflow.executor_plugin
    return plugin is not None and plugin.name.replace("snakemake-executor-plugin-", "") == "slurm"


def slurm_preflight(jobs):
    """Jobs that can never start on their partition's nodes stop the workflow here, before any
    is submitted (physweep.slurm); without sinfo there is nothing to compare with."""
    from physweep.slurm import SlurmRequestError, preflight

    try:
        preflight(jobs, [r for r in workflow.rules if not workflow.is_local(r)])
    except SlurmRequestError as exc:
        sys.exit(str(exc))
    except (OSError, ValueError) as exc:
        print(f"physweep: SLURM requests not checked against the nodes: {exc}", file=sys.stderr)


TRAIN_DATA = f"{DATA}/train.nc"


def suite_data(suite):
    """The data files an eval suite reads (its splits), keyed by split."""
    splits = PRESET["eval"][suite].get("splits") or ("test", "ood")
    return {s: f"{DATA}/{s}.nc" for s in splits}


def known_run(wildcards):
    """The run a job's {round}/{run} names. A name of the right shape that the plan does not
    know (a mistyped target path) ends Snakemake with one line naming the nearest planned runs:
    an exception here would be printed by Snakemake with a traceback."""
    try:
        return WF.plans[wildcards.round].run(wildcards.run)
    except UnknownRunError as exc:
        sys.exit(f"physweep: unknown run (nothing was run): {exc}")


# Scheduling order. Every run's early-stop decision needs the reference model's small eval (each
# probe eval stores its nRMSE) and the baseline replicates' probe evals (the sigma); the jobs that
# make them go first, so each run is decided -- and a continued run resumes -- right after its own
# probe, not after whichever baseline probe the scheduler happened to pick last; a replicate's
# continuation then starts at once and trains while the other runs probe. Round A on 2 cores, with
# the bookkeeping rules first too (rules/select.smk) and the 4-member full eval: 14.1 minutes
# where the same jobs at the same speed took 16.0.
FIRST = 1


def reference_priority(wildcards):
    """The reference's small eval (an input of every probe eval) first; its full eval when free."""
    return FIRST if wildcards.suite == "small" else 0


def baseline_run_priority(wildcards):
    return FIRST if known_run(wildcards).is_baseline else 0


def baseline_training_priority(wildcards):
    baseline = set(WF.baseline_runs(wildcards.round))
    return FIRST if baseline & set(WF.training_runs(wildcards.round, wildcards.training)) else 0


def get_template(wildcards):
    known_run(wildcards)
    return WF.run_template(wildcards.round, wildcards.run)


def get_winner_files(wildcards):
    known_run(wildcards)
    return list(WF.winner_inputs(wildcards.round, wildcards.run).values())


def get_winner_sources(wildcards):
    known_run(wildcards)
    return list(WF.winner_inputs(wildcards.round, wildcards.run))


def known_training(wildcards):
    trainings = WF.trainings(wildcards.round)
    if wildcards.training not in trainings:
        sys.exit(
            f"physweep: round {wildcards.round} has no training {wildcards.training} "
            f"(nothing was run); its trainings: {', '.join(trainings)}"
        )
    return trainings[wildcards.training]


def get_training_template(wildcards):
    known_training(wildcards)
    return WF.training_template(wildcards.round, wildcards.training)


def get_training_winner_files(wildcards):
    known_training(wildcards)
    return list(WF.training_winner_inputs(wildcards.round, wildcards.training).values())


def get_training_winner_sources(wildcards):
    known_training(wildcards)
    return list(WF.training_winner_inputs(wildcards.round, wildcards.training))


def get_training_decisions(wildcards):
    return [f"{R}/{wildcards.round}/runs/{r}/decision.json" for r in known_training(wildcards)]


def get_training_dir(wildcards):
    """The directory of the training a run's checkpoints come from."""
    known_run(wildcards)
    return f"{R}/{wildcards.round}/trainings/{WF.training_of(wildcards.round, wildcards.run)}"


def get_training_record(wildcards):
    """runs/<run>/training.json: the run's training and the runs that share it."""
    known_run(wildcards)
    key = WF.training_of(wildcards.round, wildcards.run)
    return {
        "run": wildcards.run,
        "training": key,
        "dir": f"{R}/{wildcards.round}/trainings/{key}",
        "shared_with": [r for r in WF.training_runs(wildcards.round, key) if r != wildcards.run],
    }


def get_objective(wildcards):
    return WF.plans[wildcards.round].objective


def is_baseline(wildcards):
    return known_run(wildcards).is_baseline


def get_baseline_probe_evals(wildcards):
    return [f"{R}/{wildcards.round}/runs/{b}/probe_eval.nc" for b in WF.baseline_runs(wildcards.round)]


def get_decision(round_name, run):
    """Read a run's early-stop decision (a checkpoint: evaluated after decide has run)."""
    path = checkpoints.decide.get(round=round_name, run=run).output[0]
    with open(path) as fh:
        return json.load(fh)


def get_trained_dir(round_name, run):
    """final/ for runs trained to the end, probe/ for early-stopped or diverged runs."""
    stage = "final" if get_decision(round_name, run)["continue"] else "probe"
    return f"{R}/{round_name}/trainings/{WF.training_of(round_name, run)}/{stage}"


def get_run_eval(round_name, run):
    """A run's small-eval record: small_eval.nc of its final checkpoint when it trained to the
    end; its probe_eval.nc (the same suite on the probe checkpoint) when it stopped early or
    diverged, so a stopped run is never evaluated twice."""
    name = "small_eval" if get_decision(round_name, run)["continue"] else "probe_eval"
    return f"{R}/{round_name}/runs/{run}/{name}.nc"


# Inputs of block_winner / promote / rank / report: the decisions as plain inputs (every run's
# decide enters the DAG at once) and the records through the decide checkpoints (known once all
# decisions are). rank and report also take promoted.json as a plain input: when promote reruns
# while its earlier output is on disk (a rerun of one run that does not change any decision),
# the full-eval list read from the old file would otherwise not wait for the new one.
def get_block_decisions(wildcards):
    return [
        f"{R}/{wildcards.round}/runs/{r}/decision.json"
        for r in WF.block_runs(wildcards.round, wildcards.block)
    ]


def get_block_evals(wildcards):
    return [get_run_eval(wildcards.round, r) for r in WF.block_runs(wildcards.round, wildcards.block)]


def get_round_decisions(wildcards):
    return [f"{R}/{wildcards.round}/runs/{r}/decision.json" for r in WF.run_names(wildcards.round)]


def get_round_evals(wildcards):
    return [get_run_eval(wildcards.round, r) for r in WF.run_names(wildcards.round)]


def get_promoted(round_name):
    path = checkpoints.promote.get(round=round_name).output[0]
    with open(path) as fh:
        return json.load(fh)["promoted"]


def get_full_evals(wildcards):
    return [f"{R}/{wildcards.round}/runs/{r}/full_eval.nc" for r in get_promoted(wildcards.round)]


def get_train_logs(wildcards):
    return [f"{get_trained_dir(wildcards.round, r)}/train_log.nc" for r in WF.run_names(wildcards.round)]


def get_run_meta(wildcards):
    """Per-run facts the ranking needs besides the files: block, seed, swept knob names."""
    plan = WF.plans[wildcards.round]
    return {
        "runs": {
            r.name: {
                "block": r.block,
                "seed": r.seed,
                "replicate": r.is_baseline and r.seed > 0,
                "is_baseline": r.is_baseline,
            }
            for r in plan.runs
        },
        "swept": plan.varied,
    }


def get_plan_records(wildcards):
    return plan_records(WCFG, WF.plans[wildcards.round])


# What a finished round consists of: the inputs of the round's target (`snakemake round_a`).
# Snakemake reruns a job whose output exists only when something upstream must run; a missing
# file whose consumers are all present and newer (e.g. a run's final/checkpoint.pt after a
# forced rerun was killed: Snakemake had deleted the forced job's outputs, and small_eval.nc,
# ranking.csv and report.html were still there) is not rebuilt. Listing every product as an
# input of the target makes the target itself ask for it: whatever is missing is rebuilt, and
# everything that depends on it (evals, promotion, ranking, report) is redone. Two functions:
# what every run has (plain inputs, so every run enters the DAG at once) and what the decide /
# promote checkpoints decide (continued runs' final checkpoints and evals, full evals).
def get_round_products(round_name):
    products = [
        f"{R}/{round_name}/{name}"
        for name in (
            "plan.json",
            "baseline_probe.json",
            "promoted.json",
            "ranking.csv",
            "winners.yaml",
            "report.html",
        )
    ]
    # the reference's full eval, which every promoted run's full eval reads: named here it can
    # run whenever a core is free, not in the round's last minute after promote
    products.append(f"{REF}/full_eval.nc")
    for run in WF.run_names(round_name):
        base = f"{R}/{round_name}/runs/{run}"
        trained = f"{R}/{round_name}/trainings/{WF.training_of(round_name, run)}"
        products += [
            f"{trained}/probe/checkpoint.pt",
            f"{trained}/probe/train_log.nc",
            f"{base}/training.json",
            f"{base}/probe_eval.nc",
            f"{base}/decision.json",
        ]
        products += list(WF.winner_inputs(round_name, run).values())
    return list(dict.fromkeys(products))


def get_run_decided_products(round_name, run):
    """What the decide checkpoint of one run adds: its training's final checkpoint and log and
    its small eval when it continues, nothing when it stopped."""
    if not get_decision(round_name, run)["continue"]:
        return []
    trained = f"{R}/{round_name}/trainings/{WF.training_of(round_name, run)}"
    return [
        f"{trained}/final/checkpoint.pt",
        f"{trained}/final/train_log.nc",
        f"{R}/{round_name}/runs/{run}/small_eval.nc",
    ]


def round_decided_inputs(round_name):
    """The decided products of a round as one input function *per run* (and one for the full
    evals). An input function that meets an undecided checkpoint yields nothing but that
    checkpoint, so with one function for the whole round a run decided early (a baseline
    replicate) would not have its continuation scheduled until the last run of the round was
    decided -- the runs of a block fixed from an earlier block's winner are decided last; in
    round A the replicates' continuations waited ~2 minutes for the cadence block with a core
    idle. One function per run lets each continuation start as soon as its own decision is
    known."""
    inputs = {
        f"decided_{i}": (
            lambda wildcards, round_name=round_name, run=run: get_run_decided_products(round_name, run)
        )
        for i, run in enumerate(WF.run_names(round_name))
    }
    inputs["full_evals"] = lambda wildcards, round_name=round_name: [
        f"{R}/{round_name}/runs/{r}/full_eval.nc" for r in get_promoted(round_name)
    ]
    return inputs


def all_decided_inputs():
    """round_decided_inputs of every round, for `snakemake all`."""
    return {f"{name}_{key}": fn for name in WF.rounds for key, fn in round_decided_inputs(name).items()}
