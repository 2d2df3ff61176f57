"""SLURM jobs that can never start, refused before anything is submitted.

A job that asks for more CPUs, memory or GPUs than any node of its partition has is accepted by
``sbatch`` and then stays PENDING forever (reason ``Resources`` or ``ReqNodeNotAvail``). The
workflow's ``onstart`` hook (Snakefile) calls ``preflight`` with the jobs it is about to submit
when the executor is SLURM: their requests -- computed as snakemake-executor-plugin-slurm
computes them -- are compared with the partition's node sizes from ``sinfo``, and a job that fits
no node stops the workflow with the node sizes and the profile key to change.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: ``sinfo -h -e -o SINFO_FORMAT``: partition (``*`` marks the default), CPUs, memory (MB),
#: generic resources; ``-e`` lists every distinct node configuration on its own line
SINFO_FORMAT = "%P|%c|%m|%G"
SINFO_COMMAND = ("sinfo", "-h", "-e", "-o", SINFO_FORMAT)
PROFILE = "profiles/slurm/config.yaml"


class SlurmRequestError(RuntimeError):
    """Some jobs ask for more than any node of their partition offers."""


@dataclass(frozen=True)
class NodeSize:
    """One node configuration of a partition. ``*_at_least``: sinfo printed ``N+`` (a lower
    bound), so a larger request cannot be refused for sure."""

    cpus: int
    mem_mb: int
    gpus: Mapping[str, int] = field(default_factory=dict)  # GPU type ("" untyped) -> count
    cpus_at_least: bool = False
    mem_at_least: bool = False

    def gpu_count(self, model: str | None = None) -> int:
        if model:
            return sum(n for t, n in self.gpus.items() if t == model)
        return sum(self.gpus.values())

    def describe(self) -> str:
        gpus = ", ".join(f"{n} {t}" if t else str(n) for t, n in sorted(self.gpus.items()))
        cpus = f"{self.cpus}{'+' if self.cpus_at_least else ''}"
        mem = f"{self.mem_mb}{'+' if self.mem_at_least else ''}"
        return f"{cpus} CPUs, {mem} MB, {gpus or 0} GPUs"


@dataclass(frozen=True)
class Request:
    """What one job asks SLURM for (per job: one task on one node)."""

    rule: str
    cpus: int
    mem_mb: int | None = None
    gpus: int = 0
    gpu_model: str | None = None
    partition: str | None = None


def parse_gres(gres: str) -> dict[str, int]:
    """GPU counts by type from sinfo's ``%G``: ``gpu:a100:4(S:0-1),mps:400`` -> {"a100": 4};
    ``gpu:2`` -> {"": 2}; ``(null)`` -> {}."""
    out: dict[str, int] = {}
    text = re.sub(r"\([^)]*\)", "", gres or "")  # socket bindings: (S:0-1), (S:0,1)
    for entry in text.split(","):
        parts = entry.strip().split(":")
        if not parts or parts[0] != "gpu":
            continue
        kind, count = "", 1
        rest = parts[1:]
        if rest and re.fullmatch(r"\d+", rest[-1]):
            count = int(rest.pop())
        if rest:
            kind = rest[0]
        out[kind] = out.get(kind, 0) + count
    return out


def _number(text: str) -> tuple[int, bool]:
    text = text.strip()
    at_least = text.endswith("+")
    digits = re.match(r"\d+", text)
    if not digits:
        raise ValueError(f"not a number in sinfo output: {text!r}")
    return int(digits.group()), at_least


def parse_sinfo(text: str) -> tuple[dict[str, list[NodeSize]], str | None]:
    """Node sizes by partition and the default partition, from ``sinfo -h -e -o %P|%c|%m|%G``."""
    partitions: dict[str, list[NodeSize]] = {}
    default = None
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 4:
            raise ValueError(f"unexpected sinfo line (want {SINFO_FORMAT}): {line!r}")
        name, cpus, mem, gres = (f.strip() for f in fields)
        if name.endswith("*"):
            name = name[:-1]
            default = name
        n_cpus, cpus_plus = _number(cpus)
        n_mem, mem_plus = _number(mem)
        node = NodeSize(n_cpus, n_mem, parse_gres(gres), cpus_plus, mem_plus)
        if node not in partitions.setdefault(name, []):
            partitions[name].append(node)
    return partitions, default


def _int(value: Any) -> int | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def request_from(rule: str, threads: int, resources: Mapping[str, Any]) -> Request:
    """A job's request as snakemake-executor-plugin-slurm 2.x submits it: ``--cpus-per-task``
    = ``cpus_per_task`` (a negative value: none) or else the job's threads (``cpus_per_gpu`` ×
    GPUs for a GPU job that sets it); ``--mem`` = ``mem_mb`` (or ``mem_mb_per_cpu`` × CPUs);
    ``--gpus`` = ``gpu`` (``gpu_model`` alone means 1), or a ``gpu`` entry of ``gres``."""
    get = resources.get
    gpus = _int(get("gpu")) or 0
    model = get("gpu_model") or None
    if model and not gpus and get("gpu") is None:
        gpus = 1
    gres = parse_gres(str(get("gres") or ""))
    if gres:
        gpus = max(gpus, sum(gres.values()))
        model = model or next((t for t in gres if t), None)
    cpus_per_task = _int(get("cpus_per_task"))
    cpus_per_gpu = _int(get("cpus_per_gpu"))
    if cpus_per_task:
        cpus = max(1, cpus_per_task) if cpus_per_task > 0 else 0
    elif gpus and cpus_per_gpu:
        cpus = max(0, cpus_per_gpu) * gpus
    else:
        cpus = int(threads or 1)
    mem = _int(get("mem_mb"))
    per_cpu = _int(get("mem_mb_per_cpu"))
    if per_cpu:
        mem = per_cpu * max(cpus, 1)
    partition = get("slurm_partition") or None
    return Request(rule, cpus, mem, gpus, str(model) if model else None,
                   str(partition) if partition else None)


def _short(req: Request, node: NodeSize) -> list[str]:
    """What ``node`` lacks for ``req`` ([] if it fits)."""
    lacks = []
    if req.cpus > node.cpus and not node.cpus_at_least:
        lacks.append("cpus")
    if req.mem_mb is not None and req.mem_mb > node.mem_mb and not node.mem_at_least:
        lacks.append("mem")
    if req.gpus > node.gpu_count(req.gpu_model):
        lacks.append("gpus")
    return lacks


def _describe(req: Request) -> str:
    mem = f"{req.mem_mb} MB" if req.mem_mb is not None else "no memory request"
    gpu = f"{req.gpus} GPU{'s' if req.gpus != 1 else ''}" + (
        f" ({req.gpu_model})" if req.gpu_model else "")
    return f"{req.cpus} CPUs, {mem}, {gpu} per job"


def _advice(rules: list[str], lacks: set[str], nodes: list[NodeSize]) -> list[str]:
    these = ", ".join(rules)
    out = []
    if "cpus" in lacks:
        out.append(f"CPUs: in {PROFILE} set cpus_per_task (set-resources) and set-threads of "
                   f"{these} to at most {max(n.cpus for n in nodes)}")
    if "mem" in lacks:
        out.append(f"memory: in {PROFILE} set mem_mb (set-resources, or default-resources) of "
                   f"{these} to at most {max(n.mem_mb for n in nodes)}")
    if "gpus" in lacks:
        out.append(f"GPUs: in {PROFILE} set gpu / gpu_model (set-resources) of {these}, choose "
                   "another partition (default-resources: slurm_partition), or run without "
                   "GPUs: --config use_gpu=false")
    return out


def unsatisfiable(requests: Iterable[Request], partitions: Mapping[str, list[NodeSize]],
                  default: str | None) -> list[str]:
    """One message per group of rules whose jobs fit no node of their partition."""
    groups: dict[tuple, list[str]] = {}
    for req in requests:
        names = [p for p in (req.partition or default or "").split(",") if p]
        if not names:
            continue  # no partition and no default: sbatch decides; nothing to compare with
        known = [p for p in names if p in partitions]
        if known and any(not _short(req, n) for p in known for n in partitions[p]):
            continue
        key = (bool(known), tuple(names), req.partition is None,
               req.cpus, req.mem_mb, req.gpus, req.gpu_model)
        rules = groups.setdefault(key, [])
        if req.rule not in rules:
            rules.append(req.rule)
    messages = []
    for (exists, names, implicit, *size), rules in groups.items():
        req = Request(rules[0], *size)
        where = " or ".join(f"'{p}'" for p in names) + (" (the default)" if implicit else "")
        if not exists:
            messages.append(f"{', '.join(rules)}: partition {where} does not exist (sinfo lists "
                            f"{', '.join(sorted(partitions)) or 'none'}): set default-resources "
                            f"slurm_partition in {PROFILE}")
            continue
        nodes = [n for p in names if p in partitions for n in partitions[p]]
        lacks = set().union(*(_short(req, n) for n in nodes))
        lines = [f"{', '.join(rules)}: {_describe(req)}; the nodes of partition {where} have "
                 + "; ".join(n.describe() for n in nodes)]
        lines += [f"    {a}" for a in _advice(rules, lacks, nodes)]
        messages.append("\n".join(lines))
    return messages


def run_sinfo(runner: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> str:
    proc = runner(list(SINFO_COMMAND), capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise OSError(f"{' '.join(SINFO_COMMAND)} failed ({proc.returncode}): "
                      f"{(proc.stderr or '').strip()[:500]}")
    return proc.stdout


def check_requests(requests: Iterable[Request], sinfo_output: str) -> None:
    """Raise SlurmRequestError naming every rule whose jobs no node of its partition can run."""
    partitions, default = parse_sinfo(sinfo_output)
    messages = unsatisfiable(requests, partitions, default)
    if messages:
        raise SlurmRequestError(
            "physweep: these jobs ask for more than any node of their SLURM partition has; "
            "they would stay PENDING forever, so nothing was submitted:\n  "
            + "\n  ".join(messages))


RESOURCE_KEYS = ("gpu", "gpu_model", "gres", "cpus_per_task", "cpus_per_gpu", "mem_mb",
                 "mem_mb_per_cpu", "slurm_partition")


def _static(value: Any) -> Any:
    """A rule-level resource's value, or None while it is a function of the job."""
    if value is None:
        return None
    if callable(getattr(value, "is_evaluable", None)):  # snakemake.resources.Resource
        return None if value.is_evaluable() else value.value
    return value


def preflight(jobs: Iterable[Any], rules: Iterable[Any] = (),
              sinfo: Callable[[], str] | None = None) -> int:
    """Check the jobs Snakemake is about to submit (objects with ``rule.name``, ``threads``,
    ``resources``; local jobs skipped) and, from their resources as written, the ``rules``
    (non-local) that have no job yet -- those whose jobs appear after a checkpoint, e.g.
    train_finish and full_eval. Returns the number of requests checked; raises
    SlurmRequestError; ``OSError`` when sinfo cannot be asked (the caller warns and goes on)."""
    requests = []
    for job in jobs:
        if getattr(job, "is_local", False):
            continue
        res = job.resources
        requests.append(request_from(job.rule.name, job.threads,
                                     {k: res.get(k) for k in RESOURCE_KEYS}))
    planned = {r.rule for r in requests}
    for rule in rules:
        if rule.name in planned:
            continue
        res = rule.resources
        threads = _static(res.get("_cores")) if "_cores" in res else 1
        requests.append(request_from(rule.name, _int(threads) or 1,
                                     {k: _static(res[k]) if k in res else None
                                      for k in RESOURCE_KEYS}))
    if not requests:
        return 0
    if sinfo is None:
        if shutil.which("sinfo") is None:
            raise OSError("sinfo not found")
        sinfo = run_sinfo
    check_requests(requests, sinfo())
    return len(requests)
