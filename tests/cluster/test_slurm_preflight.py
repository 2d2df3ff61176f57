"""physweep.slurm: jobs that no node of their partition can run are refused before submission,
with the node sizes and the profile key to change (fake sinfo output; no SLURM needed)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from physweep.slurm import (
    SINFO_COMMAND,
    NodeSize,
    Request,
    SlurmRequestError,
    check_requests,
    parse_gres,
    parse_sinfo,
    preflight,
    request_from,
    run_sinfo,
)

ROOT = Path(__file__).resolve().parents[2]
PROFILE = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())


def profile_requests(**default_resources) -> list[Request]:
    """The requests the SLURM profile makes for its GPU rules (threads from set-threads)."""
    defaults = {**PROFILE["default-resources"], **default_resources}
    return [request_from(rule, PROFILE["set-threads"].get(rule, 1), {**defaults, **res})
            for rule, res in PROFILE["set-resources"].items()]


def test_parse_gres():
    assert parse_gres("(null)") == {}
    assert parse_gres("gpu:2") == {"": 2}
    assert parse_gres("gpu:a100:4(S:0-1)") == {"a100": 4}
    assert parse_gres("gpu:a100:2(S:0,1),gpu:v100:1,mps:400") == {"a100": 2, "v100": 1}
    assert parse_gres("shard:8") == {}


def test_parse_sinfo_default_partition_and_lower_bounds():
    parts, default = parse_sinfo("gpu*|4|64000|gpu:a100:2(S:0)\n"
                                 "gpu*|4|64000|gpu:a100:2(S:0)\n"
                                 "cpu|32|128000|(null)\n"
                                 "big|64+|512000+|gpu:8\n")
    assert default == "gpu"
    assert parts["gpu"] == [NodeSize(4, 64000, {"a100": 2})]
    assert parts["cpu"] == [NodeSize(32, 128000, {})]
    assert parts["big"] == [NodeSize(64, 512000, {"": 8}, True, True)]
    with pytest.raises(ValueError, match="unexpected sinfo line"):
        parse_sinfo("gpu 4 64000 gpu:2")


def test_the_profile_on_a_partition_of_4_cpu_nodes_is_refused_with_sizes_and_keys():
    # the profile asks 8 CPUs for training and 4 for evaluation, one GPU each
    reqs = profile_requests()
    assert {r.rule: r.cpus for r in reqs}["train_probe"] == 8
    assert {r.rule: r.cpus for r in reqs}["eval_probe"] == 4
    with pytest.raises(SlurmRequestError) as err:
        check_requests(reqs, "gpu*|4|64000|gpu:a100:2\n")
    text = str(err.value)
    assert "train_probe, train_finish: 8 CPUs, 4000 MB, 1 GPU per job" in text
    assert "partition 'gpu' (the default)" in text and "4 CPUs, 64000 MB, 2 a100 GPUs" in text
    assert ("in profiles/slurm/config.yaml set cpus_per_task (set-resources) and set-threads "
            "of train_probe, train_finish to at most 4") in text
    assert "eval_probe" not in text  # 4 CPUs fit a 4-CPU node
    assert "PENDING" in text


def test_the_profile_fits_a_partition_with_large_enough_nodes():
    check_requests(profile_requests(), "gpu*|8|64000|gpu:a100:2\n")
    # one node configuration large enough is enough
    check_requests(profile_requests(), "gpu*|4|64000|gpu:2\ngpu*|16|64000|gpu:4\n")


def test_memory_and_gpu_shortages_name_their_keys():
    reqs = [Request("train_probe", 2, 96000, 1), Request("eval_probe", 2, 1000, 2, "a100")]
    with pytest.raises(SlurmRequestError) as err:
        check_requests(reqs, "gpu*|16|64000|gpu:v100:1\n")
    text = str(err.value)
    assert "train_probe: 2 CPUs, 96000 MB, 1 GPU per job" in text
    assert "mem_mb (set-resources, or default-resources) of train_probe to at most 64000" in text
    assert "eval_probe: 2 CPUs, 1000 MB, 2 GPUs (a100) per job" in text
    assert "use_gpu=false" in text


def test_requests_name_their_partition_and_unknown_partitions_are_refused():
    sinfo = "cpu*|64|256000|(null)\ngpu|8|64000|gpu:4\n"
    check_requests([Request("train_probe", 8, 4000, 1, partition="gpu")], sinfo)
    check_requests([Request("train_probe", 8, 4000, 1, partition="cpu,gpu")], sinfo)
    with pytest.raises(SlurmRequestError, match="'gpu' have 8 CPUs"):
        check_requests([Request("train_probe", 16, 4000, 1, partition="gpu")], sinfo)
    with pytest.raises(SlurmRequestError, match="partition 'gpux' does not exist.*cpu, gpu"):
        check_requests([Request("train_probe", 1, 100, 0, partition="gpux")], sinfo)
    # no partition and no default: nothing to compare with (sbatch decides)
    check_requests([Request("train_probe", 999, 1, 0)], "cpu|4|1000|(null)\n")
    # a lower bound ("64+") cannot refuse a larger request
    check_requests([Request("train_probe", 128, 1000, 0)], "big*|64+|1000|(null)\n")


def test_request_from_follows_the_slurm_plugin():
    assert request_from("r", 3, {}) == Request("r", 3)
    assert request_from("r", 3, {"cpus_per_task": 8, "mem_mb": 100}).cpus == 8
    assert request_from("r", 3, {"cpus_per_task": -1}).cpus == 0  # no CPU request at all
    assert request_from("r", 3, {"gpu": 2, "cpus_per_gpu": 4}).cpus == 8
    assert request_from("r", 2, {"mem_mb_per_cpu": 1000}).mem_mb == 2000
    assert request_from("r", 1, {"gpu_model": "a100"}) == Request("r", 1, None, 1, "a100")
    assert request_from("r", 1, {"gres": "gpu:h100:2"}) == Request("r", 1, None, 2, "h100")
    assert request_from("r", 1, {"gpu": 0, "slurm_partition": "p"}) == Request(
        "r", 1, None, 0, None, "p")


class _Resources(dict):
    pass


def _job(rule, threads, local=False, **res):
    return SimpleNamespace(rule=SimpleNamespace(name=rule), threads=threads, is_local=local,
                           resources=_Resources(res))


def test_preflight_checks_the_submitted_jobs_only():
    jobs = [_job("train_probe", 8, gpu=1, cpus_per_task=8, mem_mb=4000),
            _job("rank", 1, local=True, mem_mb=999999)]
    with pytest.raises(SlurmRequestError, match="train_probe"):
        preflight(jobs, sinfo=lambda: "gpu*|4|64000|gpu:1\n")
    assert preflight(jobs, sinfo=lambda: "gpu*|8|64000|gpu:1\n") == 1
    assert preflight([jobs[1]], sinfo=lambda: "") == 0  # only local jobs: sinfo not asked


def test_preflight_also_checks_rules_whose_jobs_come_after_a_checkpoint():
    """train_finish has no job before the decide checkpoints ran: its rule-level resources are
    checked; a resource that is a function of the job is not (it has no value yet)."""
    from snakemake.resources import Resource

    def rule(name, **res):
        return SimpleNamespace(name=name, resources={k: Resource(k, v) for k, v in res.items()})

    jobs = [_job("train_probe", 2, gpu=1, cpus_per_task=2)]
    rules = [rule("train_probe", _cores=8, cpus_per_task=8),  # has a job: the job counts
             rule("train_finish", _cores=8, gpu=1, cpus_per_task=8, mem_mb=4000),
             rule("full_eval", _cores=1, mem_mb=lambda wildcards: 10**9)]
    with pytest.raises(SlurmRequestError) as err:
        preflight(jobs, rules, sinfo=lambda: "gpu*|4|64000|gpu:1\n")
    text = str(err.value)
    assert "train_finish: 8 CPUs, 4000 MB, 1 GPU per job" in text
    assert "train_probe" not in text and "full_eval" not in text
    assert preflight(jobs, rules[:1], sinfo=lambda: "gpu*|4|64000|gpu:1\n") == 1


def test_run_sinfo_asks_for_every_node_configuration():
    seen = []

    def runner(cmd, **kw):
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout="gpu*|4|1000|(null)\n", stderr="")

    assert run_sinfo(runner) == "gpu*|4|1000|(null)\n"
    assert seen == [list(SINFO_COMMAND)] and "-e" in seen[0]

    def failing(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="slurm_load_partitions")

    with pytest.raises(OSError, match="slurm_load_partitions"):
        run_sinfo(failing)
