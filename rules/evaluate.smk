# Evaluation suites: probe (small suite at the probe point; the record of a run that stops there),
# small (the same suite on the final checkpoint of a run that trained to the end), full (promoted).
# Every eval reads the reference model's eval of the same suite (same samples) and stores its
# nRMSE beside the run's.


rule eval_probe:
    input:
        **suite_data("small"),
        checkpoint=f"{RUN}/probe/checkpoint.pt",
        reference=f"{REF}/small_eval.nc",
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
        **suite_data("small"),
        checkpoint=f"{RUN}/final/checkpoint.pt",
        reference=f"{REF}/small_eval.nc",
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
        **suite_data("full"),
        checkpoint=f"{RUN}/final/checkpoint.pt",
        reference=f"{REF}/full_eval.nc",
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


rule eval_reference:
    input:
        unpack(lambda w: suite_data(w.suite)),
        checkpoint=f"{REF}/checkpoint.pt",
    output:
        f"{REF}/{{suite}}_eval.nc",
    log:
        f"{R}/logs/reference/{WF.dataset}/{{suite}}_eval.log",
    benchmark:
        f"{R}/benchmarks/reference/{WF.dataset}/{{suite}}_eval.tsv"
    conda:
        "../envs/physweep.yaml"
    threads: res("eval", "threads", 1)
    resources:
        gpu=res("eval", "gpu", 0),
        mem_mb=res("eval", "mem_mb", 2000),
        runtime=res("eval", "runtime", 10),
    params:
        suite=lambda w: PRESET["eval"][w.suite],
        suite_name="{suite}",
        thresholds=config["gates"],
    script:
        "../workflow/scripts/evaluate.py"
