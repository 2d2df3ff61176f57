# physweep: the parallel-runs playbook as a Snakemake workflow.
# Table of contents only: config, validation, includes, named round targets.
#   snakemake --cores 2 round_a                 # demo round A on CPU (default preset: demo)
#   snakemake --profile slurm round_c           # round C on a SLURM cluster, one GPU per job
#   physweep plan round_c                       # the run table before anything is spent

from snakemake.utils import min_version

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/select.smk"
include: "rules/report.smk"


# `--config use_gpu=false` (clusters without GPUs): no job requests a GPU, whatever the preset,
# the profile's set-resources or the command line ask; training and evaluation run on CPU.
if not config.get("use_gpu", True):
    drop_gpu_requests(workflow.rules)


# On SLURM: refuse jobs that no node of their partition can run, before submitting any (the jobs
# of this DAG, and the rules whose jobs come after a checkpoint, e.g. train_finish).
onstart:
    if executor_is_slurm(workflow):
        slurm_preflight(workflow.dag.needrun_jobs())


# A round whose file is broken (or that inherits from one) cannot be planned: asking for it
# stops with its errors before any job; other rounds run.
for _round, _errors in WF.broken.items():

    rule:
        name:
            _round
        default_target: False
        input:
            lambda wildcards, errors=_errors, round_name=_round: sys.exit(
                f"physweep: round {round_name} cannot be planned (nothing was run):\n{errors}"
            ),
        localrule: True


rule all:
    input:
        f"{R}/report.html",
        **all_decided_inputs(),


# One named target per round: `snakemake round_c` builds results/round_c/report.html (and the
# rounds it inherits winners from, through their winners files), and rebuilds any file of the
# round that is missing, with everything that depends on it (get_round_products).
for _round in WF.rounds:

    rule:
        name:
            _round
        default_target: False
        input:
            **round_decided_inputs(_round),
            products=lambda wildcards, round_name=_round: get_round_products(round_name),
        localrule: True
