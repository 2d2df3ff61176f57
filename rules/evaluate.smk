# Evaluation suites: probe (small suite at the probe point), small (every run), full (promoted).


rule eval_probe:
    input:
        unpack(get_data_splits),
        checkpoint=f"{RUN}/probe/checkpoint.pt",
    output:
        f"{RUN}/probe_eval.nc",
    log:
        f"{LOGS}/eval_probe.log",
    benchmark:
        f"{BENCH}/eval_probe.tsv"
    conda:
        "../envs/physweep.yaml"
    threads: res("eval", "threads", 1)
    resources:
        gpu=res("eval", "gpu", 0),
        mem_mb=res("eval", "mem_mb", 2000),
        runtime=res("eval", "runtime", 10),
    params:
        suite=PRESET["eval"]["small"],
        suite_name="small",
        thresholds=config["gates"],
    script:
        "../workflow/scripts/evaluate.py"


rule small_eval:
    input:
        unpack(get_data_splits),
        checkpoint=get_small_eval_checkpoint,
    output:
        f"{RUN}/small_eval.nc",
    log:
        f"{LOGS}/small_eval.log",
    benchmark:
        f"{BENCH}/small_eval.tsv"
    conda:
        "../envs/physweep.yaml"
    threads: res("eval", "threads", 1)
    resources:
        gpu=res("eval", "gpu", 0),
        mem_mb=res("eval", "mem_mb", 2000),
        runtime=res("eval", "runtime", 10),
    params:
        suite=PRESET["eval"]["small"],
        suite_name="small",
        thresholds=config["gates"],
    script:
        "../workflow/scripts/evaluate.py"


rule full_eval:
    input:
        unpack(get_data_splits),
        checkpoint=f"{RUN}/final/checkpoint.pt",
    output:
        f"{RUN}/full_eval.nc",
    log:
        f"{LOGS}/full_eval.log",
    benchmark:
        f"{BENCH}/full_eval.tsv"
    conda:
        "../envs/physweep.yaml"
    threads: res("eval", "threads", 1)
    resources:
        gpu=res("eval", "gpu", 0),
        mem_mb=res("eval", "mem_mb", 2000),
        runtime=res("eval", "runtime", 10),
    params:
        suite=PRESET["eval"]["full"],
        suite_name="full",
        thresholds=config["gates"],
    script:
        "../workflow/scripts/evaluate.py"
