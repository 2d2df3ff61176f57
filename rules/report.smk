# Plan table, round report (self-contained HTML) and the cross-round index.


rule plan:
    output:
        f"{R}/{{round}}/plan.json",
    log:
        f"{R}/logs/{{round}}/plan.log",
    localrule: True
    conda:
        "../envs/physweep.yaml"
    resources:
        gpu=0,
        mem_mb=1000,
        runtime=10,
    params:
        records=get_plan_records,
    script:
        "../workflow/scripts/plan.py"


rule report:
    input:
        decisions=get_round_decisions,
        evals=get_round_evals,
        ranking=f"{R}/{{round}}/ranking.csv",
        winners=f"{R}/{{round}}/winners.yaml",
        plan=f"{R}/{{round}}/plan.json",
        promoted=f"{R}/{{round}}/promoted.json",  # plain input: waits for a promote that reruns
        full=get_full_evals,
        logs=get_train_logs,
    output:
        html=report(
            f"{R}/{{round}}/report.html",
            category="{round}",
            subcategory="round report",
            caption="../report/round_report.rst",
        ),
        figures=report(
            directory(f"{R}/{{round}}/figures"),
            patterns=["{name}.png"],
            category="{round}",
            subcategory="figures",
            caption="../report/figures.rst",
        ),
        tables=report(
            directory(f"{R}/{{round}}/tables"),
            patterns=["{name}.html"],
            category="{round}",
            subcategory="tables",
            caption="../report/tables.rst",
        ),
    log:
        f"{R}/logs/{{round}}/report.log",
    benchmark:
        f"{R}/benchmarks/{{round}}/report.tsv"
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
        rerun_hint=lambda wildcards: rerun_hint(R),  # a function: the text holds {round} {run}
    script:
        "../workflow/scripts/report.py"


rule index:
    input:
        reports=expand(f"{R}/{{round}}/report.html", round=WF.rounds),
        winners=expand(f"{R}/{{round}}/winners.yaml", round=WF.rounds),
        rankings=expand(f"{R}/{{round}}/ranking.csv", round=WF.rounds),
    output:
        f"{R}/report.html",
    log:
        f"{R}/logs/index.log",
    localrule: True
    conda:
        "../envs/physweep.yaml"
    resources:
        gpu=0,
        mem_mb=1000,
        runtime=10,
    params:
        rounds=WF.rounds,
        configs=[WCFG.rounds[r] for r in WF.rounds],  # inherit / fixed / blocks as written
        defaults=WCFG.config["knobs"],
    script:
        "../workflow/scripts/index.py"
