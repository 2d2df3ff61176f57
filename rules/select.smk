# Early stop (per run), block winners, promotion (round), ranking and winners.


checkpoint decide:
    input:
        run=f"{RUN}/probe_eval.nc",
        baseline=get_baseline_probe_evals,
    output:
        f"{RUN}/decision.json",
    log:
        f"{LOGS}/decide.log",
    conda:
        "../envs/physweep.yaml"
    resources:
        gpu=0,
        mem_mb=1000,
        runtime=10,
    params:
        is_baseline=is_baseline,
        objective=get_objective,
        early_stop=config["early_stop"],
    script:
        "../workflow/scripts/decide.py"


rule block_winner:
    input:
        unpack(get_block_inputs),
    output:
        f"{R}/{{round}}/blocks/{{block}}/winner.yaml",
    log:
        f"{R}/logs/{{round}}/blocks/{{block}}.log",
    conda:
        "../envs/physweep.yaml"
    resources:
        gpu=0,
        mem_mb=1000,
        runtime=10,
    params:
        runs=lambda w: WF.block_runs(w.round, w.block),
        knobs=lambda w: {r: WF.run_template(w.round, r)["nominal"] for r in WF.block_runs(w.round, w.block)},
        meta=get_run_meta,
        objective=get_objective,
    script:
        "../workflow/scripts/block_winner.py"


checkpoint promote:
    input:
        unpack(get_round_inputs),
    output:
        f"{R}/{{round}}/promoted.json",
    log:
        f"{R}/logs/{{round}}/promote.log",
    conda:
        "../envs/physweep.yaml"
    resources:
        gpu=0,
        mem_mb=1000,
        runtime=10,
    params:
        runs=lambda w: WF.run_names(w.round),
        meta=get_run_meta,
        objective=get_objective,
        k=config["promotion"]["k"],
    script:
        "../workflow/scripts/promote.py"


rule rank:
    input:
        unpack(get_round_inputs),
        full=get_full_evals,
        logs=get_train_logs,
    output:
        ranking=f"{R}/{{round}}/ranking.csv",
        winners=f"{R}/{{round}}/winners.yaml",
    log:
        f"{R}/logs/{{round}}/rank.log",
    conda:
        "../envs/physweep.yaml"
    resources:
        gpu=0,
        mem_mb=1000,
        runtime=10,
    params:
        runs=lambda w: WF.run_names(w.round),
        promoted=lambda w: get_promoted(w.round),
        meta=get_run_meta,
        objective=get_objective,
    script:
        "../workflow/scripts/rank.py"
