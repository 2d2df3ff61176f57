# Data generation: once per dataset, shared by every round.


rule prepare_data:
    output:
        train=f"{R}/data/{{dataset}}/train.nc",
        test=f"{R}/data/{{dataset}}/test.nc",
        ood=f"{R}/data/{{dataset}}/ood.nc",
    log:
        f"{R}/logs/data/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/data/{{dataset}}.tsv"
    conda:
        "../envs/physweep.yaml"
    threads: res("data", "threads")
    resources:
        gpu=res("data", "gpu"),
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        data=PRESET["data"],
    script:
        "../workflow/scripts/prepare_data.py"
