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
    threads: res("data", "threads", 2)
    resources:
        gpu=res("data", "gpu", 0),
        mem_mb=res("data", "mem_mb", 4000),
        runtime=res("data", "runtime", 30),
    params:
        data=PRESET["data"],
    script:
        "../workflow/scripts/prepare_data.py"
