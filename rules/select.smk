# Early stop (per run), block winners, promotion (round), ranking and winners.
# All of these read a few small files and take well under a second: they are local rules (run by
# the Snakemake process itself, not submitted as cluster jobs; a SLURM job costs ~8 s). They still
# take a core slot, and with equal priority the scheduler prefers jobs with larger inputs: a
# 1-second decide waited ~4 minutes behind probes while the continuation it unlocks sat idle, so
# those that unlock training (baseline_probe, decide, block_winner, promote) go first.


rule baseline_probe:
    input:
        get_baseline_probe_evals,
    output:
        f"{R}/{{round}}/baseline_probe.json",
    log:
        f"{R}/logs/{{round}}/baseline_probe.log",
    priority: FIRST
    localrule: True
    conda:
        "../envs/physweep.yaml"
    resources:
        gpu=0,
        mem_mb=1000,
        runtime=10,
    params:
        objective=get_objective,
        early_stop=config["early_stop"],
    script:
        "../workflow/scripts/baseline_probe.py"


checkpoint decide:
    input:
        run=f"{RUN}/probe_eval.nc",
        baseline=f"{R}/{{round}}/baseline_probe.json",
    output:
        f"{RUN}/decision.json",
    log:
        f"{LOGS}/decide.log",
    priority: FIRST
    localrule: True
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
        early_stop_enabled=lambda w: WF.plans[w.round].early_stop,
    script:
        "../workflow/scripts/decide.py"


rule block_winner:
    input:
        decisions=get_block_decisions,
        evals=get_block_evals,
    output:
        f"{R}/{{round}}/blocks/{{block}}/winner.yaml",
    log:
        f"{R}/logs/{{round}}/blocks/{{block}}.log",
    priority: FIRST
    localrule: True
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
        decisions=get_round_decisions,
        evals=get_round_evals,
    output:
        f"{R}/{{round}}/promoted.json",
    log:
        f"{R}/logs/{{round}}/promote.log",
    priority: FIRST
    localrule: True
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
        decisions=get_round_decisions,
        evals=get_round_evals,
        promoted=f"{R}/{{round}}/promoted.json",  # plain input: waits for a promote that reruns
        full=get_full_evals,
        logs=get_train_logs,
    output:
        ranking=f"{R}/{{round}}/ranking.csv",
        winners=f"{R}/{{round}}/winners.yaml",
    log:
        f"{R}/logs/{{round}}/rank.log",
    localrule: True
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
