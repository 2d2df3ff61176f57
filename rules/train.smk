# Training: to the probe point, then (when any run on it continues) to the end of the budget.
# One training per distinct training spec (physweep.plan.spec.training_key): runs that differ
# only in what training does not read (the corrector's cadence and guidance) share it, under
# results/<round>/trainings/<training>/, and fan out to their own evaluations (rules/evaluate.smk).


rule train_probe:
    input:
        train=TRAIN_DATA,
        winners=get_training_winner_files,
    output:
        checkpoint=f"{TRAINING}/probe/checkpoint.pt",
        log=f"{TRAINING}/probe/train_log.nc",
    log:
        f"{TLOGS}/train_probe.log",
    benchmark:
        f"{TBENCH}/train_probe.tsv"
    priority: baseline_training_priority
    conda:
        "../envs/physweep.yaml"
    threads: res("train", "threads")
    resources:
        gpu=res("train", "gpu"),
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
    params:
        template=get_training_template,
        sources=get_training_winner_sources,
        stop_fraction=config["early_stop"]["probe_fraction"],
        resume=False,
    script:
        "../workflow/scripts/train.py"


# Runs only when some run on the training continues: a continued run's small eval asks for the
# final checkpoint (through the decide checkpoints). Every run's decision is an input for the
# order only (ancient): re-evaluating and re-deciding one run (--forcerun its probe_eval.nc)
# does not retrain what the others share.
use rule train_probe as train_finish with:
    input:
        train=TRAIN_DATA,
        winners=get_training_winner_files,
        probe=f"{TRAINING}/probe/checkpoint.pt",
        decisions=lambda w: [ancient(p) for p in get_training_decisions(w)],
    output:
        checkpoint=f"{TRAINING}/final/checkpoint.pt",
        log=f"{TRAINING}/final/train_log.nc",
    log:
        f"{TLOGS}/train_finish.log",
    benchmark:
        f"{TBENCH}/train_finish.tsv"
    params:
        template=get_training_template,
        sources=get_training_winner_sources,
        stop_fraction=1.0,
        resume=True,


# Which training a run's checkpoints come from: results/<round>/runs/<run>/training.json.
rule training_link:
    output:
        f"{RUN}/training.json",
    log:
        f"{LOGS}/training_link.log",
    localrule: True
    conda:
        "../envs/physweep.yaml"
    resources:
        gpu=0,
        mem_mb=1000,
        runtime=10,
    params:
        record=get_training_record,
    script:
        "../workflow/scripts/training_link.py"


# The reference model (a conv U-Net): trained once per dataset by the same trainer; every eval
# stores its nRMSE beside the run's (rules/evaluate.smk).
rule train_reference:
    input:
        train=TRAIN_DATA,
    output:
        checkpoint=f"{REF}/checkpoint.pt",
        log=f"{REF}/train_log.nc",
    log:
        f"{R}/logs/reference/{WF.dataset}/train.log",
    benchmark:
        f"{R}/benchmarks/reference/{WF.dataset}/train.tsv"
    priority: FIRST
    conda:
        "../envs/physweep.yaml"
    threads: res("train", "threads")
    resources:
        gpu=res("train", "gpu"),
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
    params:
        reference=PRESET["reference"],
        train=PRESET["train"],
        dataset=WF.dataset,
    script:
        "../workflow/scripts/train_reference.py"
