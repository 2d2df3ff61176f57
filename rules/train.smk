# Per-run training: to the probe point, then (survivors only) to the end of the budget.


rule train_probe:
    input:
        train=TRAIN_DATA,
        winners=get_winner_files,
    output:
        checkpoint=f"{RUN}/probe/checkpoint.pt",
        log=f"{RUN}/probe/train_log.nc",
    log:
        f"{LOGS}/train_probe.log",
    benchmark:
        f"{BENCH}/train_probe.tsv"
    conda:
        "../envs/physweep.yaml"
    threads: res("train", "threads", 1)
    resources:
        gpu=res("train", "gpu", 0),
        mem_mb=res("train", "mem_mb", 2000),
        runtime=res("train", "runtime", 30),
    params:
        template=get_template,
        sources=get_winner_sources,
        stop_fraction=config["early_stop"]["probe_fraction"],
        resume=False,
    script:
        "../workflow/scripts/train.py"


rule train_finish:
    input:
        train=TRAIN_DATA,
        winners=get_winner_files,
        probe=f"{RUN}/probe/checkpoint.pt",
        decision=f"{RUN}/decision.json",
    output:
        checkpoint=f"{RUN}/final/checkpoint.pt",
        log=f"{RUN}/final/train_log.nc",
    log:
        f"{LOGS}/train_finish.log",
    benchmark:
        f"{BENCH}/train_finish.tsv"
    conda:
        "../envs/physweep.yaml"
    threads: res("train", "threads", 1)
    resources:
        gpu=res("train", "gpu", 0),
        mem_mb=res("train", "mem_mb", 2000),
        runtime=res("train", "runtime", 30),
    params:
        template=get_template,
        sources=get_winner_sources,
        stop_fraction=1.0,
        resume=True,
    script:
        "../workflow/scripts/train.py"


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
    conda:
        "../envs/physweep.yaml"
    threads: res("train", "threads", 1)
    resources:
        gpu=res("train", "gpu", 0),
        mem_mb=res("train", "mem_mb", 2000),
        runtime=res("train", "runtime", 30),
    params:
        reference=PRESET["reference"],
        train=PRESET["train"],
        dataset=WF.dataset,
    script:
        "../workflow/scripts/train_reference.py"
