# Evaluation suites: probe (small suite at the probe point; the record of a run that stops there),
# small (the same suite on the final checkpoint of a run that trained to the end), full (promoted).
# Every eval reads the reference model's eval of the same suite (same samples) and stores its
# nRMSE beside the run's. A run's evals read its training's checkpoints (rules/train.smk) and
# roll them out with the run's own evaluation settings (cadence, guidance: from its spec).


rule eval_probe:
    input:
        **suite_data("small"),
        checkpoint=lambda w: f"{get_training_dir(w)}/probe/checkpoint.pt",
        reference=f"{REF}/small_eval.nc",
        winners=get_winner_files,
    output:
        f"{RUN}/probe_eval.nc",
    log:
        f"{LOGS}/eval_probe.log",
    benchmark:
        f"{BENCH}/eval_probe.tsv"
    priority: baseline_run_priority
    conda:
        "../envs/physweep.yaml"
    threads: res("eval", "threads")
    resources:
        gpu=res("eval", "gpu"),
        mem_mb=res("eval", "mem_mb"),
        runtime=res("eval", "runtime"),
    params:
        suite=PRESET["eval"]["small"],
        suite_name="small",
        thresholds=config["gates"],
        template=get_template,
        sources=get_winner_sources,
    script:
        "../workflow/scripts/evaluate.py"


use rule eval_probe as small_eval with:
    input:
        **suite_data("small"),
        checkpoint=lambda w: f"{get_training_dir(w)}/final/checkpoint.pt",
        reference=f"{REF}/small_eval.nc",
        winners=get_winner_files,
    output:
        f"{RUN}/small_eval.nc",
    log:
        f"{LOGS}/small_eval.log",
    benchmark:
        f"{BENCH}/small_eval.tsv"


use rule eval_probe as full_eval with:
    input:
        **suite_data("full"),
        checkpoint=lambda w: f"{get_training_dir(w)}/final/checkpoint.pt",
        reference=f"{REF}/full_eval.nc",
        winners=get_winner_files,
    output:
        f"{RUN}/full_eval.nc",
    log:
        f"{LOGS}/full_eval.log",
    benchmark:
        f"{BENCH}/full_eval.tsv"
    params:
        suite=PRESET["eval"]["full"],
        suite_name="full",
        thresholds=config["gates"],
        template=get_template,
        sources=get_winner_sources,


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
    priority: reference_priority
    conda:
        "../envs/physweep.yaml"
    threads: res("eval", "threads")
    resources:
        gpu=res("eval", "gpu"),
        mem_mb=res("eval", "mem_mb"),
        runtime=res("eval", "runtime"),
    params:
        suite=lambda w: PRESET["eval"][w.suite],
        suite_name="{suite}",
        thresholds=config["gates"],
    script:
        "../workflow/scripts/evaluate.py"
